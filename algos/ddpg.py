"""Deep Deterministic Policy Gradient, following Spinning Up's PyTorch ddpg.py (Lillicrap et al. 2016).

Per update, on a minibatch (o, a, r, o', d) with d = terminated (truncation bootstraps):

    backup = r + gamma (1 - d) Q_targ(o', mu_targ(o'))
    LossQ  = mean (Q(o, a) - backup)^2                  -> step the critic
    LossPi = -mean Q(o, mu(o))   (critic frozen)        -> step the actor
    mu_targ, Q_targ <- polyak targ + (1 - polyak) online

The actor is a tanh MLP scaled to the action bounds. Exploration adds N(0, act_noise) to mu(o) and
clips to the bounds (noise in action units, as in Spinning Up). The loop is
offpolicy.run_off_policy, the same for DDPG, TD3 and SAC.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spintui.algos import native
from spintui.algos.config import DDPGConfig
from spintui.algos.offpolicy import (
    MLP,
    QEnsemble,
    action_bounds,
    adam,
    frozen,
    minimize,
    polyak_update,
    q_forward,
    run_off_policy,
    target_copy,
)


class DeterministicActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes, act_scale: torch.Tensor, act_center: torch.Tensor):
        super().__init__()
        self.pi = MLP([obs_dim, *hidden_sizes, act_dim], output_activation=torch.tanh)
        self.register_buffer("act_scale", act_scale)
        self.register_buffer("act_center", act_center)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.act_center, self.pi(obs), self.act_scale)


class DDPG:
    def __init__(self, cfg: DDPGConfig, obs_space, act_space, device: torch.device):
        obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
        self.cfg, self.device = cfg, device
        act_scale, act_center = action_bounds(act_space, device)
        self.low_np, self.high_np = act_space.low, act_space.high
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_sizes, act_scale, act_center).to(device)
        self.actor_targ = target_copy(self.actor)
        self.critic = QEnsemble(1, obs_dim, act_dim, cfg.hidden_sizes).to(device)  # a single Q
        self.critic_targ = target_copy(self.critic)
        self.critic_frozen = frozen(self.critic)
        self.pi_optimizer = adam(self.actor.parameters(), cfg.pi_lr)
        self.q_optimizer = adam(self.critic.parameters(), cfg.q_lr)
        self.native = native.DeterministicAgentViews(
            self.actor, self.actor_targ, self.pi_optimizer, self.critic, self.critic_targ, self.q_optimizer,
            members=1) if native.wanted(cfg.update, device, cfg.hidden_sizes) else None

    # -- acting --------------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        action = self.actor(obs_t)[0].cpu().numpy()
        if deterministic:
            return action
        action = action + self.cfg.act_noise * np.random.randn(*action.shape)
        return np.clip(action, self.low_np, self.high_np).astype(np.float32)

    # -- learning ------------------------------------------------------------------------------
    def update(self, obs, act, rew, next_obs, done) -> dict[str, torch.Tensor]:
        discount = self.cfg.gamma * (1 - done)
        if self.native:
            stats = self.native.update(obs, act, rew, next_obs, discount, None, self.cfg.polyak, policy_delay=1)
            return {"LossQ": stats["LossQ"], "LossPi": stats["LossPi"], "QVals": stats["Q"][:, 0]}
        loss_q, loss_pi, q_vals = [], [], []
        for j in range(obs.shape[0]):
            lq, lp, q = self.update_once(obs[j], act[j], rew[j], next_obs[j], discount[j])
            loss_q.append(lq)
            loss_pi.append(lp)
            q_vals.append(q)
        return {"LossQ": torch.stack(loss_q), "LossPi": torch.stack(loss_pi), "QVals": torch.stack(q_vals)}

    def update_once(self, o, a, r, o2, discount):
        # Critic: regress Q(o, a) onto the Bellman backup through the target networks.
        q = self.critic(o, a)[0]
        with torch.no_grad():
            q_pi_targ = self.critic_targ(o2, self.actor_targ(o2))[0]
            backup = r + discount * q_pi_targ
        loss_q = (q - backup).square().mean()
        minimize(loss_q, self.q_optimizer)

        # Actor: maximise Q(o, mu(o)) through the frozen critic.
        loss_pi = -q_forward(self.critic_frozen, o, self.actor(o)).mean()
        minimize(loss_pi, self.pi_optimizer)

        polyak_update(self.actor_targ, self.actor, self.cfg.polyak)
        polyak_update(self.critic_targ, self.critic, self.cfg.polyak)
        return loss_q.detach(), loss_pi.detach(), q.detach()

    # -- logging and checkpoints ---------------------------------------------------------------
    def stat_layout(self):
        return ("QVals",), ("LossQ", "LossPi")

    def epoch_values(self) -> dict[str, float]:
        return {}

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "actor_targ": self.actor_targ,
                "critic": self.critic, "critic_targ": self.critic_targ}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"pi": self.pi_optimizer, "q": self.q_optimizer}

    def extra(self) -> dict:
        return {}


def train(cfg: DDPGConfig, run) -> dict:
    """Train DDPG on cfg.env, logging into `run` (a profiles.store.RunWriter)."""
    return run_off_policy(cfg, run, "ddpg", DDPG)


def load_policy(checkpoint: dict, env, device: str | torch.device = "cpu"):
    """The saved deterministic policy mu(o) as obs -> action (also TD3's)."""
    cfg = checkpoint["config"]
    device = torch.device(device)
    act_scale, act_center = action_bounds(env.action_space, device)
    actor = DeterministicActor(env.observation_space.shape[0], env.action_space.shape[0],
                               tuple(cfg["hidden_sizes"]), act_scale, act_center).to(device)
    actor.load_state_dict(checkpoint["modules"]["actor"])
    actor.eval()

    @torch.inference_mode()
    def policy(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        return actor(obs_t)[0].cpu().numpy()

    return policy
