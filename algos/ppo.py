"""Proximal Policy Optimization (clip), following Spinning Up's PPO.

    for each epoch:
        collect steps_per_epoch steps with the current policy (over all processes)
        compute rewards-to-go and GAE-lambda advantages (normalized), bootstrapping V at truncation
        for up to train_pi_iters steps:                      # full-batch Adam steps
            stop early if approx KL(old || new) > 1.5 * target_kl
            maximize  mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))
        train_v_iters Adam steps on  mean((V(s) - R)^2)
"""

from __future__ import annotations

from functools import partial

import torch

from spintui.algos.actor_critic import load_policy  # noqa: F401  (spintui eval's obs -> action)
from spintui.algos.data_parallel import average_gradients, average_scalar
from spintui.algos.onpolicy import run_on_policy

COLUMNS = {"LossPi": "avg", "LossV": "avg", "DeltaLossPi": "avg", "DeltaLossV": "avg", "Entropy": "avg",
           "KL": "avg", "ClipFrac": "avg", "StopIter": "avg"}


def compute_loss_pi(ac, data: dict, clip_ratio: float):
    obs, act, adv, logp_old = data["obs"], data["act"], data["adv"], data["logp"]
    dist = ac.pi.distribution(obs)
    logp = dist.log_prob(act)
    ratio = torch.exp(logp - logp_old)
    clip_adv = torch.clamp(ratio, 1 - clip_ratio, 1 + clip_ratio) * adv
    loss_pi = -(torch.min(ratio * adv, clip_adv)).mean()
    with torch.no_grad():
        approx_kl = (logp_old - logp).mean().item()
        entropy = dist.entropy().mean().item()
        clipped = ratio.gt(1 + clip_ratio) | ratio.lt(1 - clip_ratio)
        clip_frac = clipped.float().mean().item()
    return loss_pi, {"kl": approx_kl, "ent": entropy, "cf": clip_frac}


def update_policy(ac, pi_optimizer, data: dict, cfg) -> dict[str, float]:
    loss_pi_old, info_old = None, None
    stop_iter = cfg.train_pi_iters - 1
    for i in range(cfg.train_pi_iters):
        pi_optimizer.zero_grad(set_to_none=True)
        loss_pi, info = compute_loss_pi(ac, data, cfg.clip_ratio)
        if i == 0:
            loss_pi_old, info_old = loss_pi.item(), info
        if average_scalar(info["kl"]) > 1.5 * cfg.target_kl:  # every rank takes the same decision
            stop_iter = i
            break
        loss_pi.backward()
        average_gradients(ac.pi.parameters())
        pi_optimizer.step()
    with torch.no_grad():
        loss_pi_new, info_new = compute_loss_pi(ac, data, cfg.clip_ratio)
    return {"LossPi": loss_pi_old, "DeltaLossPi": loss_pi_new.item() - loss_pi_old, "Entropy": info_old["ent"],
            "KL": info_new["kl"], "ClipFrac": info_new["cf"], "StopIter": stop_iter}


def train(cfg, run, resume: dict | None = None) -> None:
    def make_policy_update(ac):
        pi_optimizer = torch.optim.Adam(ac.pi.parameters(), lr=cfg.pi_lr)
        return partial(update_policy, ac, pi_optimizer, cfg=cfg), {"pi": pi_optimizer}

    run_on_policy(cfg, run, "ppo", COLUMNS, make_policy_update, resume)
