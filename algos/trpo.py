"""Trust Region Policy Optimization, after Spinning Up's TRPO (TF1; its PyTorch file was a stub).

    for each epoch:
        collect steps_per_epoch steps with the current policy (over all processes)
        compute rewards-to-go and GAE-lambda advantages (normalized), bootstrapping V at truncation
        g  = gradient of the surrogate loss  L(theta) = -mean(ratio * A)
        H  = Hessian of the mean KL(pi_old || pi_theta), used only through products H v (+ damping v)
        x  = H^-1 g by conjugate gradient (cg_iters)
        step = sqrt(2 delta / x^T H x) * x
        backtracking line search: theta_old - backtrack_coeff^j * step for j = 0, 1, ...
            accept the first that keeps the measured KL <= delta and does not increase L
            (none accepted within backtrack_iters: keep the old parameters)
        train_v_iters Adam steps on  mean((V(s) - R)^2)
"""

from __future__ import annotations

from functools import partial

import torch
from torch.distributions import kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from spintui.algos.actor_critic import load_policy  # noqa: F401  (spintui eval's obs -> action)
from spintui.algos.data_parallel import average_scalar, average_tensor
from spintui.algos.onpolicy import run_on_policy
from spintui.algos.sparse_layers import SparseLinear

EPS = 1e-8

COLUMNS = {"LossPi": "avg", "LossV": "avg", "DeltaLossPi": "avg", "DeltaLossV": "avg", "Entropy": "avg",
           "KL": "avg", "BacktrackIters": "avg"}


def flat_grad(y: torch.Tensor, params, **kwargs) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, **kwargs)])


def conjugate_gradient(Avp, b: torch.Tensor, iters: int) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only the product A v."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    r_dot_old = r @ r
    for _ in range(iters):
        z = Avp(p)
        alpha = r_dot_old / (p @ z + EPS)
        x += alpha * p
        r -= alpha * z
        r_dot_new = r @ r
        p = r + (r_dot_new / r_dot_old) * p
        r_dot_old = r_dot_new
    return x


def update_policy(ac, data: dict, cfg) -> dict[str, float]:
    obs, act, adv, logp_old = data["obs"], data["act"], data["adv"], data["logp"]
    params = list(ac.pi.parameters())
    with torch.no_grad():
        dist_old = ac.pi.distribution(obs)

    def surrogate_loss() -> torch.Tensor:
        return -(torch.exp(ac.pi.distribution(obs).log_prob(act) - logp_old) * adv).mean()

    def mean_kl() -> torch.Tensor:
        return kl_divergence(dist_old, ac.pi.distribution(obs)).mean()

    loss_pi = surrogate_loss()
    loss_old = average_scalar(loss_pi.item())
    g = average_tensor(flat_grad(loss_pi, params))
    grad_kl = flat_grad(mean_kl(), params, create_graph=True)

    def hessian_vector_product(v: torch.Tensor) -> torch.Tensor:
        hv = flat_grad(grad_kl @ v, params, retain_graph=True)
        return average_tensor(hv) + cfg.damping_coeff * v

    x = conjugate_gradient(hessian_vector_product, g, cfg.cg_iters)
    step_size = torch.sqrt(2 * cfg.delta / (x @ hessian_vector_product(x) + EPS))
    theta_old = parameters_to_vector(params).detach()

    accepted_kl, loss_new, backtrack = 0.0, loss_old, cfg.backtrack_iters
    with torch.no_grad():
        for j in range(cfg.backtrack_iters):
            vector_to_parameters(theta_old - (cfg.backtrack_coeff ** j) * step_size * x, params)
            kl = average_scalar(mean_kl().item())
            loss = average_scalar(surrogate_loss().item())
            if kl <= cfg.delta and loss <= loss_old:
                accepted_kl, loss_new, backtrack = kl, loss, j
                break
        else:  # line search failed: keep the old policy
            vector_to_parameters(theta_old, params)
        entropy = dist_old.entropy().mean().item()
    return {"LossPi": loss_old, "DeltaLossPi": loss_new - loss_old, "Entropy": entropy, "KL": accepted_kl,
            "BacktrackIters": backtrack}


def twice_differentiable(ac) -> None:
    """Block-sparse policy layers compute through their dense masked weight: Hessian-vector products
    differentiate twice, and the block-sparse kernels' backward is once-differentiable."""
    for layer in ac.pi.modules():
        if isinstance(layer, SparseLinear):
            layer.twice_differentiable = True


def train(cfg, run, resume: dict | None = None) -> None:
    def make_policy_update(ac):
        twice_differentiable(ac)
        return partial(update_policy, ac, cfg=cfg), {}

    run_on_policy(cfg, run, "trpo", COLUMNS, make_policy_update, resume)
