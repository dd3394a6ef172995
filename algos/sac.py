"""Soft Actor-Critic, following Spinning Up's PyTorch sac.py (Haarnoja et al. 2018).

Per update, on a minibatch (o, a, r, o', d) with d = terminated (truncation bootstraps):

    a' ~ pi(.|o'),  backup = r + gamma (1 - d) (min_i Q_targ_i(o', a') - alpha log pi(a'|o'))
    LossQ  = sum_i mean (Q_i(o, a) - backup)^2                       -> step both critics
    a~ ~ pi(.|o),   LossPi = mean (alpha log pi(a~|o) - min_i Q_i(o, a~))  (critics frozen) -> step actor
    with --alpha auto: LossAlpha = -mean log_alpha (log pi(a~|o) + target_entropy), target = -dim(A)
    Q_targ <- polyak Q_targ + (1 - polyak) Q

The policy is a tanh-squashed Gaussian with log-std clamped to [-20, 2]; tests use the mean action.
The loop around this (exploration, update schedule, tests, logging, checkpoints) is
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
from spintui.algos.config import SACConfig
from spintui.algos.offpolicy import run_off_policy
from spintui.algos.offpolicy_acting import Acting
from spintui.algos.offpolicy_nets import (MLP, QEnsemble, action_bounds, adam, frozen, minimize, polyak_update,
                                          saved_policy, target_copy)
from spintui.algos.sparse_layers import SparseSpec, sparse_spec


class SquashedGaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes, act_scale: torch.Tensor, act_center: torch.Tensor,
                 sparse: SparseSpec | None = None):
        super().__init__()
        # Hidden ReLU layers, then one linear layer giving the mean and log-std of each action dimension.
        self.net = MLP([obs_dim, *hidden_sizes, 2 * act_dim], sparse=sparse)
        self.act_dim = act_dim
        self.register_buffer("act_scale", act_scale)
        self.register_buffer("act_center", act_center)

    def forward(self, obs: torch.Tensor, deterministic: bool = False, with_logprob: bool = True,
                eps: torch.Tensor | None = None):
        """eps: the N(0, 1) draw of the reparameterised sample (drawn here when not given)."""
        return losses.squashed_gaussian(list(self.net.params), obs, eps, self.act_scale, self.act_center,
                                        deterministic, with_logprob, self.net.layouts)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action: the mean, squashed and scaled."""
        return self(obs, deterministic=True, with_logprob=False)[0]


class SAC:
    def __init__(self, cfg: SACConfig, obs_space, act_space, device: torch.device):
        obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
        self.cfg, self.device = cfg, device
        act_scale, act_center = action_bounds(act_space, device)
        sparse = sparse_spec(cfg)
        self.actor = SquashedGaussianActor(obs_dim, act_dim, cfg.hidden_sizes, act_scale, act_center, sparse).to(device)
        self.critic = QEnsemble(2, obs_dim, act_dim, cfg.hidden_sizes, sparse).to(device)  # q1, q2
        self.critic_targ = target_copy(self.critic)
        self.critic_frozen = frozen(self.critic)
        self.layouts = losses.Layouts(self.actor.net.layouts, self.critic.layouts)
        self.pi_optimizer = adam(self.actor.parameters(), cfg.lr)
        self.q_optimizer = adam(self.critic.parameters(), cfg.lr)
        self.auto_alpha = cfg.alpha == "auto"
        if self.auto_alpha:
            self.target_entropy = -float(act_dim)
            self.log_alpha = torch.zeros(1, device=device, requires_grad=True)
            self.alpha_optimizer = adam([self.log_alpha], cfg.lr)
            self.alpha = self.log_alpha.detach().exp()
        else:
            self.alpha = torch.tensor(float(cfg.alpha), device=device)
        self.acting = Acting(self.actor, device, obs_dim, squashed=True)
        self.update_path = offpolicy_paths.choose(cfg.update, device, cfg.hidden_sizes, sparse is not None)
        self.native = self.update_path.name == "native"
        self.compiled = None
        if self.update_path.name == "compile":
            self.compiled = offpolicy_paths.CompiledUpdate("sac", self, device)
            self.update_path.compile_seconds = self.compiled.warm_up(cfg.batch_size, obs_dim, act_dim)
        if self.native:
            self.actor_view = native.NetView(list(self.actor.parameters()), self.pi_optimizer, 1)
            self.critic_view = native.NetView(list(self.critic.parameters()), self.q_optimizer, 2,
                                              target=list(self.critic_targ.parameters()))

    # -- acting --------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.acting.policy(obs, deterministic)

    # -- learning ------------------------------------------------------------------------------
    def update(self, obs, act, rew, next_obs, done) -> dict[str, torch.Tensor]:
        """One gradient step per minibatch of the block; statistics stay on the device.

        The policy's N(0, 1) draws for the whole block come first, (n, 2, batch, act): [j, 0] for
        a' ~ pi(.|o'), [j, 1] for a~ ~ pi(.|o), so both update paths consume the same randomness."""
        discount = self.cfg.gamma * (1 - done)  # for the whole block at once
        noise = torch.randn(act.shape[0], 2, *act.shape[1:], device=self.device)
        if self.native:
            return self.update_native(obs, act, rew, next_obs, discount, noise)
        if self.compiled is not None:
            stats = self.compiled.block(obs, act, rew, next_obs, discount, noise)
            q = stats.pop("Q")
            return {**stats, "Q1Vals": q[:, 0], "Q2Vals": q[:, 1]}
        loss_q, loss_pi, q_vals, logp_vals = [], [], [], []
        for j in range(obs.shape[0]):
            lq, lp, q, logp = self.update_once(obs[j], act[j], rew[j], next_obs[j], discount[j], noise[j])
            loss_q.append(lq)
            loss_pi.append(lp)
            q_vals.append(q)
            logp_vals.append(logp)
        q_vals = torch.stack(q_vals)  # (n, 2, batch)
        return {"LossQ": torch.stack(loss_q), "LossPi": torch.stack(loss_pi),
                "Q1Vals": q_vals[:, 0], "Q2Vals": q_vals[:, 1], "LogPi": torch.stack(logp_vals)}

    def update_once(self, o, a, r, o2, discount, eps=(None, None)):
        """One gradient step of each network, the losses from offpolicy_losses (the functional step's too)."""
        alpha, bounds = self.alpha, (self.actor.act_scale, self.actor.act_center)
        pi, q, q_targ = list(self.actor.net.params), list(self.critic.params), list(self.critic_targ.params)
        loss_q, q_vals = losses.sac_compute_loss_q(q, q_targ, pi, o, a, r, o2, discount, eps[0], alpha, *bounds,
                                                    self.layouts)
        minimize(loss_q, self.q_optimizer)

        loss_pi, logp_pi = losses.sac_compute_loss_pi(pi, self.critic_frozen, o, eps[1], alpha, *bounds,
                                                      self.layouts)
        minimize(loss_pi, self.pi_optimizer)

        if self.auto_alpha:
            minimize(losses.sac_compute_loss_alpha(self.log_alpha, logp_pi, self.target_entropy), self.alpha_optimizer)
            self.alpha = self.log_alpha.detach().exp()

        polyak_update(self.critic_targ, self.critic, self.cfg.polyak)
        return loss_q.detach(), loss_pi.detach(), q_vals, logp_pi

    def update_native(self, obs, act, rew, next_obs, discount, noise) -> dict[str, torch.Tensor]:
        """The same block of updates by the compiled CPU code (native.py), in place on the same tensors."""
        n, batch = obs.shape[:2]
        stats = {"LossQ": torch.empty(n), "LossPi": torch.empty(n), "Q": torch.empty(n, 2, batch),
                 "LogPi": torch.empty(n, batch)}
        block, _keep = native.block_struct(obs, act, rew, next_obs, discount, noise, self.actor.act_scale,
                                           self.actor.act_center, self.cfg.polyak, stats["LossQ"],
                                           stats["LossPi"], stats["Q"], stats["LogPi"])
        alpha = self.alpha.reshape(1).clone()
        block.alpha = alpha.data_ptr()
        if self.auto_alpha:
            native.init_adam_state(self.alpha_optimizer)
            state, group = self.alpha_optimizer.state[self.log_alpha], self.alpha_optimizer.param_groups[0]
            block.auto_alpha, block.target_entropy = 1, self.target_entropy
            block.log_alpha, block.log_alpha_m, block.log_alpha_v, block.log_alpha_step = (
                t.data_ptr() for t in (self.log_alpha, state["exp_avg"], state["exp_avg_sq"], state["step"]))
            block.alpha_lr, (block.alpha_beta1, block.alpha_beta2), block.alpha_eps = (
                group["lr"], group["betas"], group["eps"])
        native.run_block("sac", self.actor_view, self.critic_view, block)
        self.alpha = alpha.reshape(self.alpha.shape)
        q = stats.pop("Q")
        return {**stats, "Q1Vals": q[:, 0], "Q2Vals": q[:, 1]}

    # -- logging and checkpoints ---------------------------------------------------------------
    def stat_layout(self):
        return ("Q1Vals", "Q2Vals", "LogPi"), ("LossQ", "LossPi")

    def epoch_values(self) -> dict[str, float]:
        return {"Alpha": float(self.alpha)}

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "critic_targ": self.critic_targ}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        out = {"pi": self.pi_optimizer, "q": self.q_optimizer}
        if self.auto_alpha:
            out["alpha"] = self.alpha_optimizer
        return out

    def extra(self) -> dict:
        """The learned temperature: log alpha and alpha as the updates left it (exp in C may round
        differently from torch's, so resuming takes alpha as it was, not exp(log alpha))."""
        if not self.auto_alpha:
            return {}
        return {"log_alpha": self.log_alpha.detach().cpu().clone(), "alpha": self.alpha.detach().cpu().clone()}

    def restore_extra(self, extra: dict) -> None:
        if self.auto_alpha and "log_alpha" in extra:
            with torch.no_grad():
                self.log_alpha.copy_(extra["log_alpha"])
            alpha = extra.get("alpha")
            self.alpha = (alpha.to(self.device) if alpha is not None else self.log_alpha.detach().exp()).reshape(
                self.alpha.shape)


def train(cfg: SACConfig, run, resume: dict | None = None) -> dict:
    """Train SAC on cfg.env, logging into `run` (a profiles.store.RunWriter), from `resume` (a checkpoint) if given."""
    return run_off_policy(cfg, run, "sac", SAC, resume)


load_policy = partial(saved_policy, actor_class=SquashedGaussianActor)  # the mean action
