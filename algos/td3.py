"""Twin Delayed DDPG, following Spinning Up's PyTorch td3.py (Fujimoto et al. 2018), and DDPG as its
special case (ddpg.py: one critic, no target policy smoothing, policy delay 1).

Per update j of a block, on a minibatch (o, a, r, o', d) with d = terminated (truncation bootstraps):

    a' = clip(mu_targ(o') + clip(eps, -noise_clip, noise_clip), low, high),  eps ~ N(0, target_noise)
         (DDPG: a' = mu_targ(o'))
    backup = r + gamma (1 - d) min_i Q_targ_i(o', a')
    LossQ  = sum_i mean (Q_i(o, a) - backup)^2                     -> step the critics
    every policy_delay-th update (j % policy_delay == 0):
        LossPi = -mean Q_1(o, mu(o))   (critics frozen)            -> step actor
        mu_targ, Q_targ <- polyak targ + (1 - polyak) online

The actor is a tanh MLP scaled to the action bounds. Exploration adds N(0, act_noise) to mu(o) and
clips to the bounds (noise in action units, as in Spinning Up). The loop is
offpolicy.run_off_policy, the same for DDPG, TD3 and SAC.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from spintui.algos import native
from spintui.algos import offpolicy_losses as losses
from spintui.algos import offpolicy_paths
from spintui.algos.config import DDPGConfig, TD3Config
from spintui.algos.offpolicy import run_off_policy
from spintui.algos.offpolicy_acting import Acting
from spintui.algos.offpolicy_nets import (MLP, QEnsemble, action_bounds, adam, frozen, minimize, polyak_update,
                                          saved_policy, target_copy)
from spintui.algos.sparse_layers import SparseSpec, sparse_spec


class DeterministicActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes, act_scale: torch.Tensor, act_center: torch.Tensor,
                 sparse: SparseSpec | None = None):
        super().__init__()
        self.pi = MLP([obs_dim, *hidden_sizes, act_dim], output_activation=torch.tanh, sparse=sparse)
        self.register_buffer("act_scale", act_scale)
        self.register_buffer("act_center", act_center)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return losses.deterministic_action(list(self.pi.params), obs, self.act_scale, self.act_center, self.pi.layouts)

    mode = forward  # the deterministic action, as SquashedGaussianActor.mode


class TD3:
    """TD3's agent: `critics` Q networks (clipped double-Q with two), target policy smoothing when
    `smoothing`, actor and target steps every `policy_delay` critic steps (cfg.policy_delay if None)."""

    def __init__(self, cfg: TD3Config | DDPGConfig, obs_space, act_space, device: torch.device, *,
                 critics: int = 2, smoothing: bool = True, policy_delay: int | None = None):
        obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
        self.cfg, self.device, self.smoothing = cfg, device, smoothing
        self.policy_delay = cfg.policy_delay if policy_delay is None else policy_delay
        self.q_names = ("QVals",) if critics == 1 else tuple(f"Q{k + 1}Vals" for k in range(critics))
        self.act_scale, self.act_center = action_bounds(act_space, device)
        self.low_np, self.high_np = act_space.low, act_space.high
        sparse = sparse_spec(cfg)
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_sizes, self.act_scale, self.act_center,
                                        sparse).to(device)
        self.actor_targ = target_copy(self.actor)
        self.critic = QEnsemble(critics, obs_dim, act_dim, cfg.hidden_sizes, sparse).to(device)
        self.critic_targ = target_copy(self.critic)
        self.critic_frozen = frozen(self.critic)
        self.layouts = losses.Layouts(self.actor.pi.layouts, self.critic.layouts)
        self.pi_optimizer = adam(self.actor.parameters(), cfg.pi_lr)
        self.q_optimizer = adam(self.critic.parameters(), cfg.q_lr)
        self.acting = Acting(self.actor, device, obs_dim, squashed=False)
        self.update_path = offpolicy_paths.choose(cfg.update, device, cfg.hidden_sizes, sparse is not None)
        self.native = native.DeterministicAgentViews(
            self.actor, self.actor_targ, self.pi_optimizer, self.critic, self.critic_targ, self.q_optimizer,
            members=critics) if self.update_path.name == "native" else None
        self.compiled = None
        if self.update_path.name == "compile":
            self.compiled = offpolicy_paths.CompiledUpdate("td3", self, device)
            self.update_path.compile_seconds = self.compiled.warm_up(cfg.batch_size, obs_dim, act_dim, smoothing,
                                                                        self.policy_delay)

    # -- acting --------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        action = self.acting.policy(obs)
        if deterministic:
            return action
        action = action + self.cfg.act_noise * np.random.randn(*action.shape)
        return np.clip(action, self.low_np, self.high_np).astype(np.float32)

    # -- learning ------------------------------------------------------------------------------
    def update(self, obs, act, rew, next_obs, done) -> dict[str, torch.Tensor]:
        discount = self.cfg.gamma * (1 - done)
        target_eps = None
        if self.smoothing:  # target policy smoothing noise for the whole block at once
            target_eps = (torch.randn(*act.shape, device=self.device) * self.cfg.target_noise).clamp(
                -self.cfg.noise_clip, self.cfg.noise_clip)
        if self.native:
            stats = self.native.update(obs, act, rew, next_obs, discount, target_eps, self.cfg.polyak,
                                       self.policy_delay)
            return self.named_stats(stats["LossQ"], stats["LossPi"], stats["Q"])
        if self.compiled is not None:
            stats = self.compiled.block(obs, act, rew, next_obs, discount, target_eps, self.policy_delay)
            return self.named_stats(stats["LossQ"], stats["LossPi"], stats["Q"])
        loss_q, loss_pi, q_vals = [], [], []
        for j in range(obs.shape[0]):
            eps = None if target_eps is None else target_eps[j]
            lq, q = self.update_critic(obs[j], act[j], rew[j], next_obs[j], discount[j], eps)
            loss_q.append(lq)
            q_vals.append(q)
            if j % self.policy_delay == 0:
                loss_pi.append(self.update_actor_and_targets(obs[j]))
        return self.named_stats(torch.stack(loss_q), torch.stack(loss_pi), torch.stack(q_vals))

    def update_critic(self, o, a, r, o2, discount, target_eps):
        """The losses from offpolicy_losses (the functional step's too); DDPG's target_eps is None."""
        loss_q, q = losses.td3_compute_loss_q(list(self.critic.params), list(self.critic_targ.params),
                                              list(self.actor_targ.pi.params), o, a, r, o2, discount, target_eps,
                                              self.act_scale, self.act_center, self.layouts)
        minimize(loss_q, self.q_optimizer)
        return loss_q.detach(), q

    def update_actor_and_targets(self, o):
        loss_pi = losses.td3_compute_loss_pi(list(self.actor.pi.params), self.critic_frozen, o, self.act_scale,
                                             self.act_center, self.layouts)
        minimize(loss_pi, self.pi_optimizer)
        polyak_update(self.actor_targ, self.actor, self.cfg.polyak)
        polyak_update(self.critic_targ, self.critic, self.cfg.polyak)
        return loss_pi.detach()

    def named_stats(self, loss_q, loss_pi, q) -> dict[str, torch.Tensor]:
        """q: (n, critics, batch), logged as QVals (one critic) or Q1Vals, Q2Vals, ..."""
        return {"LossQ": loss_q, "LossPi": loss_pi, **{name: q[:, k] for k, name in enumerate(self.q_names)}}

    # -- logging and checkpoints ---------------------------------------------------------------
    def stat_layout(self):
        return self.q_names, ("LossQ", "LossPi")

    def epoch_values(self) -> dict[str, float]:
        return {}

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "actor_targ": self.actor_targ,
                "critic": self.critic, "critic_targ": self.critic_targ}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"pi": self.pi_optimizer, "q": self.q_optimizer}

    def extra(self) -> dict:
        return {}

    def restore_extra(self, extra: dict) -> None:
        pass


def train(cfg: TD3Config, run, resume: dict | None = None) -> dict:
    """Train TD3 on cfg.env, logging into `run` (a profiles.store.RunWriter), from `resume` (a checkpoint) if given."""
    return run_off_policy(cfg, run, "td3", TD3, resume)


load_policy = partial(saved_policy, actor_class=DeterministicActor)  # mu(o); also DDPG's
