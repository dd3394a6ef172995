"""One gradient step of SAC, TD3 or DDPG as a function: (parameters, Adam state, targets, batch, noise) -> new ones.

Built only from the losses in offpolicy_losses.py: gradients by torch.func (so torch.compile
traces the whole step, gradient included, as one graph), Adam as plain tensor arithmetic (torch's
Adam without amsgrad or weight decay), Polyak averaging as lerp. `*_step` functions are pure; the
`*_step_` forms write the results into the tensors they were given, so the agents' modules and
optimizers (and with them checkpoints and resuming) see the step as if the eager update had done it.

A state is a dict of lists of tensors, made by `sac_state` / `td3_state` from an agent: "pi", "q",
and per network "<net>_m", "<net>_v", "<net>_step" (Adam), "q_targ", "pi_targ" (TD3), "alpha",
"log_alpha" and its Adam state (SAC). Hyperparameters are plain floats in a dict.
"""

from __future__ import annotations

import torch
from torch.func import grad_and_value

from spintui.algos import offpolicy_losses as losses

# --------------------------------------------------------------------------------------------------
# Adam and Polyak as functions


def adam(params, grads, m, v, steps, lr: float, beta1: float, beta2: float, eps: float):
    """torch.optim.Adam's arithmetic (no amsgrad, no weight decay) out of place: (params, m, v, steps)."""
    steps = [s + 1 for s in steps]
    m = [mi.lerp(g, 1 - beta1) for mi, g in zip(m, grads)]
    v = [vi * beta2 + (1 - beta2) * g * g for vi, g in zip(v, grads)]
    new = []
    for p, mi, vi, s in zip(params, m, v, steps):
        step_size = lr / (1 - beta1 ** s)
        denom = vi.sqrt() / (1 - beta2 ** s).sqrt() + eps
        new.append(p - step_size * mi / denom)
    return new, m, v, steps


def polyak(target, online, polyak_coef: float):
    """targ <- polyak targ + (1 - polyak) online, as torch's lerp (the eager update's _foreach_lerp_)."""
    return [t.lerp(p, 1 - polyak_coef) for t, p in zip(target, online)]


def _adam_net(state: dict, net: str, grads, hp: dict) -> dict:
    params, m, v, steps = adam(state[net], grads, state[f"{net}_m"], state[f"{net}_v"], state[f"{net}_step"],
                               hp[f"{net}_lr"], hp["beta1"], hp["beta2"], hp["eps"])
    return {net: params, f"{net}_m": m, f"{net}_v": v, f"{net}_step": steps}


# --------------------------------------------------------------------------------------------------
# SAC


def sac_step(state: dict, o, a, r, o2, discount, noise, hp: dict):
    """One SAC update: critics, then the actor through the stepped critics, the temperature (auto), the targets.

    noise: (2, batch, act) N(0, 1) draws, [0] for a' ~ pi(.|o'), [1] for a~ ~ pi(.|o).
    Returns (new state entries, stats: LossQ, LossPi, Q (critics, batch), LogPi (batch))."""
    bounds = (hp["act_scale"], hp["act_center"])
    alpha = state["alpha"][0]  # this update's, before its own step

    def loss_q(q):
        return losses.sac_compute_loss_q(q, state["q_targ"], state["pi"], o, a, r, o2, discount, noise[0], alpha,
                                         *bounds)

    grads, (lq, q_vals) = grad_and_value(loss_q, has_aux=True)(state["q"])
    new = _adam_net(state, "q", grads, hp)

    def loss_pi(pi):
        return losses.sac_compute_loss_pi(pi, new["q"], o, noise[1], alpha, *bounds)

    grads, (lp, logp_pi) = grad_and_value(loss_pi, has_aux=True)(state["pi"])
    new.update(_adam_net(state, "pi", grads, hp))

    if hp["auto_alpha"]:
        grad = torch.func.grad(losses.sac_compute_loss_alpha)(state["log_alpha"][0], logp_pi, hp["target_entropy"])
        (log_alpha,), m, v, steps = adam(state["log_alpha"], [grad], state["log_alpha_m"], state["log_alpha_v"],
                                         state["log_alpha_step"], hp["alpha_lr"], hp["beta1"], hp["beta2"], hp["eps"])
        new.update(log_alpha=[log_alpha], log_alpha_m=m, log_alpha_v=v, log_alpha_step=steps,
                   alpha=[log_alpha.exp()])
    new["q_targ"] = polyak(state["q_targ"], new["q"], hp["polyak"])
    return new, {"LossQ": lq, "LossPi": lp, "Q": q_vals, "LogPi": logp_pi}


# --------------------------------------------------------------------------------------------------
# TD3 and DDPG


def td3_step(state: dict, o, a, r, o2, discount, target_eps, hp: dict, actor_step: bool):
    """One TD3 (DDPG: target_eps None, one critic) update: the critics, and when `actor_step` the actor
    through the stepped critics, then both targets. Returns (new state entries, stats: LossQ, Q[, LossPi])."""
    bounds = (hp["act_scale"], hp["act_center"])

    def loss_q(q):
        return losses.td3_compute_loss_q(q, state["q_targ"], state["pi_targ"], o, a, r, o2, discount, target_eps,
                                         *bounds)

    grads, (lq, q_vals) = grad_and_value(loss_q, has_aux=True)(state["q"])
    new = _adam_net(state, "q", grads, hp)
    stats = {"LossQ": lq, "Q": q_vals}
    if actor_step:
        grads, lp = grad_and_value(lambda pi: losses.td3_compute_loss_pi(pi, new["q"], o, *bounds))(state["pi"])
        new.update(_adam_net(state, "pi", grads, hp))
        new["pi_targ"] = polyak(state["pi_targ"], new["pi"], hp["polyak"])
        new["q_targ"] = polyak(state["q_targ"], new["q"], hp["polyak"])
        stats["LossPi"] = lp
    return new, stats


# --------------------------------------------------------------------------------------------------
# In place, on an agent's tensors


def write_back(state: dict, new: dict) -> None:
    for key, values in new.items():
        for dst, src in zip(state[key], values):
            dst.copy_(src)


def sac_step_(state: dict, o, a, r, o2, discount, noise, hp: dict) -> dict:
    new, stats = sac_step(state, o, a, r, o2, discount, noise, hp)
    write_back(state, new)
    return stats


def td3_step_(state: dict, o, a, r, o2, discount, target_eps, hp: dict, actor_step: bool) -> dict:
    new, stats = td3_step(state, o, a, r, o2, discount, target_eps, hp, actor_step)
    write_back(state, new)
    return stats


def init_adam_state(optimizer: torch.optim.Adam) -> None:
    """Create Adam's per-parameter state the way torch.optim.Adam's first step does (zeros, step 0)."""
    for p in optimizer.param_groups[0]["params"]:
        state = optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _net_state(name: str, params, optimizer: torch.optim.Adam) -> dict:
    init_adam_state(optimizer)
    group = optimizer.param_groups[0]
    if group.get("amsgrad") or group.get("weight_decay") or group.get("maximize"):
        raise ValueError("the functional update implements plain Adam only")
    states = [optimizer.state[p] for p in group["params"]]
    for p, s in zip(group["params"], states):
        if s["step"].device != p.device:  # a CUDA graph replays device work only: the counters go along
            s["step"] = s["step"].to(p.device)
    return {name: [p.detach() for p in params], f"{name}_m": [s["exp_avg"] for s in states],
            f"{name}_v": [s["exp_avg_sq"] for s in states], f"{name}_step": [s["step"] for s in states]}


def _hyper(agent, optimizers: dict) -> dict:
    group = next(iter(optimizers.values())).param_groups[0]
    hp = {"act_scale": agent.actor.act_scale, "act_center": agent.actor.act_center, "polyak": float(agent.cfg.polyak),
          "beta1": float(group["betas"][0]), "beta2": float(group["betas"][1]), "eps": float(group["eps"])}
    for name, opt in optimizers.items():
        hp[f"{name}_lr"] = float(opt.param_groups[0]["lr"])
    return hp


def sac_state(agent) -> tuple[dict, dict]:
    """(state, hyperparameters) of a SAC agent; the state's tensors are the agent's own (or views of them).
    Taken again after a checkpoint is loaded: that replaces the optimizers' state tensors."""
    state = {**_net_state("pi", agent.actor.net.params, agent.pi_optimizer),
             **_net_state("q", agent.critic.params, agent.q_optimizer),
             "q_targ": [p.detach() for p in agent.critic_targ.params], "alpha": [agent.alpha.reshape(1)]}
    optimizers = {"pi": agent.pi_optimizer, "q": agent.q_optimizer}
    if agent.auto_alpha:
        alpha_state = _net_state("log_alpha", [agent.log_alpha], agent.alpha_optimizer)
        state.update(alpha_state)
        optimizers["alpha"] = agent.alpha_optimizer
    hp = _hyper(agent, optimizers)
    hp.update(auto_alpha=agent.auto_alpha, target_entropy=float(getattr(agent, "target_entropy", 0.0)))
    return state, hp


def td3_state(agent) -> tuple[dict, dict]:
    """(state, hyperparameters) of a TD3 or DDPG agent, as sac_state."""
    state = {**_net_state("pi", agent.actor.pi.params, agent.pi_optimizer),
             **_net_state("q", agent.critic.params, agent.q_optimizer),
             "pi_targ": [p.detach() for p in agent.actor_targ.pi.params],
             "q_targ": [p.detach() for p in agent.critic_targ.params]}
    return state, _hyper(agent, {"pi": agent.pi_optimizer, "q": agent.q_optimizer})
