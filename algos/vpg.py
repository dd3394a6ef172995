"""Vanilla Policy Gradient with GAE-lambda advantages, following Spinning Up's VPG.

    for each epoch:
        collect steps_per_epoch steps with the current policy (over all processes)
        compute rewards-to-go and GAE-lambda advantages (normalized), bootstrapping V at truncation
        one Adam step on the policy:  maximize  mean(log pi(a|s) * A)
        train_v_iters Adam steps on  mean((V(s) - R)^2)
"""

from __future__ import annotations

import torch

from spintui.algos import onpolicy
from spintui.algos.onpolicy import average_gradients

COLUMNS = {"LossPi": "avg", "LossV": "avg", "DeltaLossPi": "avg", "DeltaLossV": "avg", "Entropy": "avg",
           "KL": "avg"}


def compute_loss_pi(ac, data: dict):
    dist = ac.pi.distribution(data["obs"])
    logp = dist.log_prob(data["act"])
    loss_pi = -(logp * data["adv"]).mean()
    with torch.no_grad():
        approx_kl = (data["logp"] - logp).mean().item()
        entropy = dist.entropy().mean().item()
    return loss_pi, {"kl": approx_kl, "ent": entropy}


def update_policy(ac, pi_optimizer, data: dict) -> dict[str, float]:
    pi_optimizer.zero_grad(set_to_none=True)
    loss_pi, info_old = compute_loss_pi(ac, data)
    loss_pi.backward()
    average_gradients(ac.pi.parameters())
    pi_optimizer.step()
    with torch.no_grad():
        loss_pi_new, info_new = compute_loss_pi(ac, data)
    # KL and DeltaLossPi are measured after the step (the policy before it made the data).
    return {"LossPi": loss_pi.item(), "DeltaLossPi": loss_pi_new.item() - loss_pi.item(),
            "Entropy": info_old["ent"], "KL": info_new["kl"]}


def train(cfg, run) -> None:
    session = onpolicy.Session("vpg", cfg, run)
    ac = session.ac
    pi_optimizer = torch.optim.Adam(ac.pi.parameters(), lr=cfg.pi_lr)
    v_optimizer = torch.optim.Adam(ac.v.parameters(), lr=cfg.vf_lr)
    optimizers = {"pi": pi_optimizer, "v": v_optimizer}

    for epoch in range(session.epochs):
        data = session.collect()
        if data is None:  # stop requested mid-rollout: keep the last complete update
            break
        with session.timer.phase("policyUpdate"):
            pi_info = update_policy(ac, pi_optimizer, data)
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
