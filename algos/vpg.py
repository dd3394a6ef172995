"""Vanilla Policy Gradient with GAE-lambda advantages, following Spinning Up's VPG.

    for each epoch:
        collect steps_per_epoch steps with the current policy (over all processes)
        compute rewards-to-go and GAE-lambda advantages (normalized), bootstrapping V at truncation
        one Adam step on the policy:  maximize  mean(log pi(a|s) * A)
        train_v_iters Adam steps on  mean((V(s) - R)^2)
"""

from __future__ import annotations

from functools import partial

import torch

from spintui.algos.actor_critic import load_policy  # noqa: F401  (spintui eval's obs -> action)
from spintui.algos.data_parallel import average_gradients
from spintui.algos.onpolicy import run_on_policy

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


def train(cfg, run, resume: dict | None = None) -> None:
    def make_policy_update(ac):
        pi_optimizer = torch.optim.Adam(ac.pi.parameters(), lr=cfg.pi_lr)
        return partial(update_policy, ac, pi_optimizer), {"pi": pi_optimizer}

    run_on_policy(cfg, run, "vpg", COLUMNS, make_policy_update, resume)
