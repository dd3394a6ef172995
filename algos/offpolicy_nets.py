"""The networks and optimizer steps of DDPG, TD3 and SAC: stacked critics, MLPs stored (in, out),
target copies, Polyak averaging and a lean Adam step.

Speed notes (why the code looks the way it does):
* The critics of DDPG/TD3/SAC are one module with stacked weights, evaluated with one `bmm` per
  hidden layer, so twin Q costs the kernel launches of a single network.
* Target networks move with one `_foreach_lerp_`; Adam runs fused (or foreach) over all tensors.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.optim.adam import adam as adam_update

from spintui.algos.sparse_layers import layout_from_state, sparse_spec
from spintui.kernels import blocksparse_matmul


def action_bounds(action_space, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, center) so that a tanh output in [-1, 1] maps onto [low, high]."""
    low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError(f"action space {action_space} must have finite bounds")
    return (high - low) / 2, (high + low) / 2



class LayoutBuffers(nn.Module):
    """A functional net's block-sparse layers: `layouts[i]` is weight i's layout (None: dense), its
    mask the buffer `block_mask{i}`, so checkpoints hold it and loading one takes the saved layout."""

    def _init_layouts(self, sizes, sparse, name: str) -> None:
        self.layouts: list = [None] * (len(sizes) - 1)
        if sparse is None:
            return
        for i in range(1, len(sizes) - 2):  # hidden-to-hidden layers only
            self.layouts[i] = sparse.layout(name, i, sizes[i], sizes[i + 1])
            self.register_buffer(f"block_mask{i}", self.layouts[i].mask.clone())

    def _init_weight(self, i: int, members: tuple[int, ...], fan_in: int, fan_out: int) -> tuple[nn.Parameter, float]:
        """Weight i, stored (*members, in, out) dense or (*members, nnz, b, b) blocks of the
        [out, in] matrix; uniform in +-1/sqrt(fan in) as nn.Linear, the fan in scaled by the density."""
        layout = self.layouts[i]
        if layout is None:
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.empty(*members, fan_in, fan_out).uniform_(-bound, bound)), bound
        bound = 1.0 / math.sqrt(max(1.0, fan_in * layout.density))
        return nn.Parameter(torch.empty(*members, *layout.values_shape()).uniform_(-bound, bound)), bound

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for i, layout in enumerate(self.layouts):
            mask = state_dict.get(f"{prefix}block_mask{i}")
            if layout is not None and mask is not None:
                self.layouts[i] = layout_from_state(layout, mask, state_dict.get(f"{prefix}params.{2 * i}"),
                                                    self.params[2 * i])
                setattr(self, f"block_mask{i}", self.layouts[i].mask.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class QEnsemble(LayoutBuffers):
    """`n` independent Q(s, a) MLPs with ReLU, stored as stacked weights and run as one batched network.

    forward(obs, act) -> (n, batch) Q values. Each member is initialised like torch's nn.Linear, so
    n=2 is exactly Spinning Up's q1, q2 pair, computed with one batched matmul per layer. With
    `sparse` the hidden-to-hidden layers are block-sparse, one layout shared by the members.
    """

    def __init__(self, n: int, obs_dim: int, act_dim: int, hidden_sizes, sparse=None, name: str = "critic"):
        super().__init__()
        self.n = n
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self._init_layouts(sizes, sparse, name)
        params = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight, bound = self._init_weight(i, (n,), fan_in, fan_out)
            params.append(weight)
            params.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
        self.params = nn.ParameterList(params)

    def forward(self, obs: torch.Tensor, act: torch.Tensor, params=None) -> torch.Tensor:
        return q_forward(list(self.params) if params is None else params, obs, act, self.layouts)


def q_forward(params, obs: torch.Tensor, act: torch.Tensor, layouts=None) -> torch.Tensor:
    """Stacked critics as a function of their parameters [W0, b0, W1, b1, ...]; W (n, in, out), or
    (n, nnz, b, b) blocks where `layouts` has a layout for it.

    Hidden layers are one bmm each, with the bias and ReLU applied in place. The last layer (width
    -> 1) is a multiply and a row sum: as a bmm with one output column it took about twice as long
    forward + backward on CPU (a matrix-vector product is a poor fit for a batched GEMM).
    """
    x = torch.cat([obs, act], dim=-1)
    n = params[0].shape[0]
    x = x.unsqueeze(0).expand(n, *x.shape)
    last = len(params) - 2
    for i in range(0, last, 2):
        layout = layouts[i // 2] if layouts else None
        if layout is None:
            x = torch.bmm(x, params[i])
        else:
            x = blocksparse_matmul(x, params[i], layout, mode="dds", trans_b=True)
        x = x.add_(params[i + 1]).relu_()
    w_out, b_out = params[last], params[last + 1]  # (n, width, 1), (n, 1, 1)
    return (x * w_out.transpose(1, 2)).sum(-1) + b_out.view(n, 1)


class MLP(LayoutBuffers):
    """Spinning Up's mlp() with ReLU, its weights stored (in, out) and applied with one addmm per layer.

    Same function and initialisation as a stack of nn.Linear; on CPU, x @ W with W stored (in, out)
    ran about 20% faster forward + backward than nn.Linear's x @ W.T at these sizes, and mm then an
    in-place bias add and ReLU about 10% faster than addmm then relu. With `sparse` the
    hidden-to-hidden layers are block-sparse (blocks of the [out, in] matrix, as BlockSparseLinear).
    """

    def __init__(self, sizes, output_activation=None, sparse=None, name: str = "actor"):
        super().__init__()
        self._init_layouts(sizes, sparse, name)
        params = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight, bound = self._init_weight(i, (), fan_in, fan_out)
            params.append(weight)
            params.append(nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound)))
        self.params = nn.ParameterList(params)
        self.output_activation = output_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = mlp_forward(list(self.params), x, self.layouts)
        return x if self.output_activation is None else self.output_activation(x)


def mlp_forward(params, x: torch.Tensor, layouts=None) -> torch.Tensor:
    """MLP as a function of its parameters [W0, b0, W1, b1, ...], W (in, out), or (nnz, b, b) blocks of
    the [out, in] matrix where `layouts` has a layout for it: ReLU hidden layers, linear output."""
    last = len(params) - 2
    for i in range(0, last, 2):
        layout = layouts[i // 2] if layouts else None
        if layout is None:
            x = torch.mm(x, params[i]).add_(params[i + 1]).relu_()  # in place: no extra activations
        else:
            x = blocksparse_matmul(x, params[i], layout, mode="dds", trans_b=True, bias=params[i + 1]).relu_()
    return torch.addmm(params[last + 1], x, params[last])


def saved_policy(checkpoint: dict, env, device="cpu", *, actor_class: type[nn.Module]) -> Callable:
    """The checkpoint's actor (built as in the agents) as obs -> its deterministic action, actor.mode(obs)."""
    device = torch.device(device)
    act_scale, act_center = action_bounds(env.action_space, device)
    config = checkpoint["config"]
    actor = actor_class(env.observation_space.shape[0], env.action_space.shape[0], tuple(config["hidden_sizes"]),
                        act_scale, act_center, sparse=sparse_spec(config)).to(device)
    actor.load_state_dict(checkpoint["modules"]["actor"])
    actor.eval()

    @torch.inference_mode()
    def policy(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        return actor.mode(obs_t)[0].cpu().numpy()

    return policy


def frozen(module: nn.Module) -> list[torch.Tensor]:
    """Detached views of a module's parameters: they follow in-place optimizer steps but take no
    gradient (Spinning Up freezes the critics while the actor steps; this costs nothing per update)."""
    return [p.detach() for p in module.parameters()]


def target_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, polyak: float) -> None:
    """targ <- polyak * targ + (1 - polyak) * online, for all tensors in one call."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - polyak)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam over all tensors at once: fused kernels where torch has them, else foreach."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def minimize(loss: torch.Tensor, optimizer: torch.optim.Adam) -> None:
    """One Adam step on `loss`: the arithmetic of zero_grad(); loss.backward(); optimizer.step().

    Gradients come from torch.autograd.grad and go straight into torch's functional (fused) Adam on
    the optimizer's own state, so checkpoints still hold a normal Adam state_dict. For nets this
    small, Optimizer.step() and zero_grad() bookkeeping took about twice as long as the fused
    kernel itself (measured here: 468 vs 172 us per step).
    """
    group = optimizer.param_groups[0]
    params = group["params"]
    grads = torch.autograd.grad(loss, params)
    states = [optimizer.state[p] for p in params]
    if not states[0]:  # the first step creates Adam's state the usual way
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        for p in params:
            p.grad = None
        return
    beta1, beta2 = group["betas"]
    adam_update(params, list(grads), [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
                [s["step"] for s in states], foreach=group["foreach"], fused=group["fused"], amsgrad=False,
                beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=False)

