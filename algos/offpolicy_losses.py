"""The losses of SAC, TD3 and DDPG as pure functions, read like Spinning Up's compute_loss_q / compute_loss_pi.

Each takes the networks' parameters as lists of tensors ([W0, b0, W1, b1, ...], critics stacked
as in offpolicy_nets.QEnsemble) and a minibatch as explicit tensors, and returns the loss with
what is logged beside it. Nothing here holds state or draws randomness: the Gaussian draws of SAC
and TD3's smoothing noise come in as arguments. Both update paths are built from these: the eager
agents (sac.py, td3.py) take gradients with torch.autograd, the functional step
(offpolicy_step.py) with torch.func, and its compiled form is the same Python traced once.

`discount` is gamma * (1 - terminated) per sample (a truncated episode still bootstraps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spintui.algos.offpolicy_nets import mlp_forward, q_forward

LOG_STD_MIN, LOG_STD_MAX = -20, 2
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_2 = math.log(2)


@dataclass(frozen=True)
class Layouts:
    """The block-sparse layouts of the actor's and the critics' weights (`MLP.layouts`,
    `QEnsemble.layouts`; None, or None per weight, where dense). Targets share their network's."""

    pi: list | None = None
    q: list | None = None


DENSE = Layouts()


# --------------------------------------------------------------------------------------------------
# Policies as functions of their parameters


def squashed_gaussian(pi, obs, eps, act_scale, act_center, deterministic: bool = False, with_logprob: bool = True,
                      layouts=None):
    """SAC's policy: a tanh-squashed Gaussian, (action, log-prob or None).

    `eps` is the N(0, 1) draw of the reparameterised sample u = mu + std * eps (drawn here when None)."""
    out = mlp_forward(pi, obs, layouts)
    act_dim = out.shape[-1] // 2
    mu, log_std = out.split(act_dim, dim=-1)
    log_std = torch.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX)
    if not deterministic and eps is None:
        eps = torch.randn_like(mu)
    u = mu if deterministic else torch.addcmul(mu, log_std.exp(), eps)
    logp = None
    if with_logprob:
        # log N(u; mu, std) = -(log_std + eps^2 / 2 + log(2 pi) / 2), then the tanh correction
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) (Spinning Up's numerically stable form).
        half_eps2 = 0.0 if deterministic else 0.5 * eps.square()
        neg_logp = log_std + half_eps2 + 2 * (LOG_2 - u - F.softplus(-2 * u))
        logp = -neg_logp.sum(-1) - act_dim * HALF_LOG_2PI
    return torch.addcmul(act_center, torch.tanh(u), act_scale), logp


def deterministic_action(pi, obs, act_scale, act_center, layouts=None):
    """DDPG's and TD3's policy mu(o): a tanh MLP scaled to the action bounds."""
    return torch.addcmul(act_center, torch.tanh(mlp_forward(pi, obs, layouts)), act_scale)


def regression_loss(q, backup):
    """sum over critics of mean (Q_i(o, a) - backup)^2; q is (critics, batch)."""
    return (q - backup).square().mean(1).sum()


# --------------------------------------------------------------------------------------------------
# SAC


def sac_compute_loss_q(q, q_targ, pi, o, a, r, o2, discount, eps, alpha, act_scale, act_center, layouts=DENSE):
    """Both critics onto the entropy-regularised backup; returns (LossQ, Q values (critics, batch)).

    backup = r + gamma (1 - d) (min_i Q_targ_i(o', a') - alpha log pi(a'|o')), a' ~ pi(.|o') with draw eps."""
    q_vals = q_forward(q, o, a, layouts.q)
    with torch.no_grad():
        a2, logp_a2 = squashed_gaussian(pi, o2, eps, act_scale, act_center, layouts=layouts.pi)
        q_pi_targ = q_forward(q_targ, o2, a2, layouts.q).amin(0)
        backup = r + discount * (q_pi_targ - alpha * logp_a2)
    return regression_loss(q_vals, backup), q_vals.detach()


def sac_compute_loss_pi(pi, q, o, eps, alpha, act_scale, act_center, layouts=DENSE):
    """mean (alpha log pi(a~|o) - min_i Q_i(o, a~)), a~ ~ pi(.|o) with draw eps; returns (LossPi, log pi(a~|o)).

    The critics' parameters `q` are only read: give detached ones (Spinning Up freezes them)."""
    action, logp_pi = squashed_gaussian(pi, o, eps, act_scale, act_center, layouts=layouts.pi)
    q_pi = q_forward(q, o, action, layouts.q).amin(0)
    return (alpha * logp_pi - q_pi).mean(), logp_pi.detach()


def sac_compute_loss_alpha(log_alpha, logp_pi, target_entropy: float):
    """The temperature's loss (--alpha auto): -mean log_alpha (log pi(a~|o) + target_entropy)."""
    return -(log_alpha * (logp_pi.detach() + target_entropy)).mean()


# --------------------------------------------------------------------------------------------------
# TD3 and DDPG (DDPG: one critic, no target policy smoothing)


def td3_compute_loss_q(q, q_targ, pi_targ, o, a, r, o2, discount, target_eps, act_scale, act_center, layouts=DENSE):
    """Critics onto the clipped double-Q backup; returns (LossQ, Q values (critics, batch)).

    a' = clip(mu_targ(o') + target_eps, low, high) (target_eps already clipped to +-noise_clip; None: no
    smoothing), backup = r + gamma (1 - d) min_i Q_targ_i(o', a')."""
    q_vals = q_forward(q, o, a, layouts.q)
    with torch.no_grad():
        a2 = deterministic_action(pi_targ, o2, act_scale, act_center, layouts.pi)
        if target_eps is not None:
            a2 = torch.clamp(a2 + target_eps, act_center - act_scale, act_center + act_scale)
        backup = r + discount * q_forward(q_targ, o2, a2, layouts.q).amin(0)
    return regression_loss(q_vals, backup), q_vals.detach()


def td3_compute_loss_pi(pi, q, o, act_scale, act_center, layouts=DENSE):
    """-mean Q_1(o, mu(o)): the actor follows the first critic only; `q` only read (give detached ones)."""
    q1 = [p[:1] for p in q]
    return -q_forward(q1, o, deterministic_action(pi, o, act_scale, act_center, layouts.pi), layouts.q).mean()


def ddpg_compute_loss_q(q, q_targ, pi_targ, o, a, r, o2, discount, act_scale, act_center, layouts=DENSE):
    """DDPG's critic loss: TD3's with one critic and no target policy smoothing."""
    return td3_compute_loss_q(q, q_targ, pi_targ, o, a, r, o2, discount, None, act_scale, act_center, layouts)


ddpg_compute_loss_pi = td3_compute_loss_pi  # -mean Q(o, mu(o))
