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

import torch

from spintui.algos import onpolicy
from spintui.algos.onpolicy import average_gradients, average_scalar

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


def train(cfg, run) -> None:
    session = onpolicy.Session("ppo", cfg, run)
    ac = session.ac
    pi_optimizer = torch.optim.Adam(ac.pi.parameters(), lr=cfg.pi_lr)
    v_optimizer = torch.optim.Adam(ac.v.parameters(), lr=cfg.vf_lr)
    optimizers = {"pi": pi_optimizer, "v": v_optimizer}

    for epoch in range(session.epochs):
        data = session.collect()
        if data is None:  # stop requested mid-rollout: keep the last complete update
            break
        with session.timer.phase("policyUpdate"):
            pi_info = update_policy(ac, pi_optimizer, data, cfg)
        with session.timer.phase("valueUpdate"):
            loss_v_old, loss_v_new = onpolicy.update_value(ac, v_optimizer, data, cfg.train_v_iters)
        session.end_epoch(epoch, COLUMNS, LossV=loss_v_old, DeltaLossV=loss_v_new - loss_v_old, **pi_info)
        session.checkpoint(optimizers)
        if session.should_stop(0):
            break
    session.close(optimizers)


def load_policy(checkpoint: dict, env, device="cpu"):
    """A deterministic obs -> action callable (mean action, or the most likely discrete action)."""
    ac = onpolicy.load_actor_critic(checkpoint, env, device)
    return onpolicy.deterministic_policy(ac, env.action_space, device)
