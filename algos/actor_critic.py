"""The actor-critic networks of VPG, PPO and TRPO (Spinning Up's core.MLPActorCritic).

A categorical policy for Discrete actions, a diagonal Gaussian with a state-independent log-std
(initialised to -0.5) for Box actions, and a value network; tanh MLPs by default.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from spintui.algos.core import mlp
from spintui.algos.sparse_layers import SparseSpec, sparse_spec


def forward_layers(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """net(x) minus nn.Module's per-call hook handling: several microseconds per layer, paid on
    every env step when acting one observation at a time."""
    for layer in net:
        x = layer.forward(x)
    return x


class MLPCategoricalActor(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes, activation, sparse=None):
        super().__init__()
        self.logits_net = mlp([obs_dim, *hidden_sizes, n_actions], activation, sparse=sparse, name="pi")

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits_net(obs), validate_args=False)

    @torch.inference_mode()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        # Gumbel-max: argmax(logits + Gumbel noise) is an exact categorical sample, and several times
        # cheaper per env step than building a Categorical or calling multinomial.
        logits = forward_layers(self.logits_net, obs)
        return (logits - torch.empty_like(logits).exponential_().log()).argmax(-1)

    @torch.no_grad()
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_net(obs).argmax(-1)


class MLPGaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes, activation, sparse=None):
        super().__init__()
        self.log_std = nn.Parameter(torch.full((act_dim,), -0.5))
        self.mu_net = mlp([obs_dim, *hidden_sizes, act_dim], activation, sparse=sparse, name="pi")

    def distribution(self, obs: torch.Tensor) -> Independent:
        # Independent(..., 1): log_prob, entropy and KL sum over action dimensions.
        return Independent(Normal(self.mu_net(obs), self.log_std.exp(), validate_args=False), 1,
                           validate_args=False)

    @torch.inference_mode()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        mu = forward_layers(self.mu_net, obs)
        return mu + self.log_std.exp() * torch.randn_like(mu)

    @torch.no_grad()
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mu_net(obs)


class MLPActorCritic(nn.Module):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden_sizes=(64, 64),
                 activation: type[nn.Module] = nn.Tanh, sparse: SparseSpec | None = None):
        super().__init__()
        obs_dim = int(np.prod(observation_space.shape))
        if isinstance(action_space, gym.spaces.Discrete):
            self.pi = MLPCategoricalActor(obs_dim, int(action_space.n), hidden_sizes, activation, sparse)
        elif isinstance(action_space, gym.spaces.Box):
            self.pi = MLPGaussianActor(obs_dim, int(np.prod(action_space.shape)), hidden_sizes, activation, sparse)
        else:
            raise ValueError(f"on-policy algorithms support Box or Discrete actions, got {action_space}")
        self.v = mlp([obs_dim, *hidden_sizes, 1], activation, sparse=sparse, name="v")

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)


def build_actor_critic(env: gym.Env, hidden_sizes, device, sparse: SparseSpec | None = None) -> MLPActorCritic:
    space_obs = getattr(env, "single_observation_space", env.observation_space)
    space_act = getattr(env, "single_action_space", env.action_space)
    return MLPActorCritic(space_obs, space_act, tuple(hidden_sizes), sparse=sparse).to(device)


def deterministic_policy(ac: MLPActorCritic, action_space: gym.Space, device) -> Callable:
    """obs -> action with the mean action (Box, clipped to bounds) or the most likely one (Discrete)."""
    ac.eval()
    box = isinstance(action_space, gym.spaces.Box)

    def act(obs):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
        a = ac.pi.mode(x).cpu().numpy()
        if box:
            return np.clip(a, action_space.low, action_space.high).astype(action_space.dtype)
        return int(a) if a.ndim == 0 else a

    return act


def load_actor_critic(checkpoint: dict, env: gym.Env, device) -> MLPActorCritic:
    config = checkpoint["config"]
    ac = build_actor_critic(env, config["hidden_sizes"], device, sparse_spec(config))
    ac.load_state_dict(checkpoint["modules"]["ac"])
    return ac


def load_policy(checkpoint: dict, env: gym.Env, device="cpu") -> Callable:
    """A deterministic obs -> action callable (mean action, or the most likely discrete action)."""
    return deterministic_policy(load_actor_critic(checkpoint, env, device), env.action_space, device)
