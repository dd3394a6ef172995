"""Data parallelism the way Spinning Up used MPI, on torch.distributed (VPG, PPO, TRPO).

Parameters are broadcast from rank 0 at the start, gradients averaged with all_reduce, statistics
reduced over all ranks. With one process every helper is a no-op.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_device(device: torch.device, requested: str = "auto") -> torch.device:
    """One GPU per process on a node: cuda:LOCAL_RANK (NCCL cannot share a GPU between ranks)."""
    if device.type == "cuda" and world_size() > 1:
        index = int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            if requested == "auto":
                return torch.device("cpu")
            raise ValueError(f"--device cuda with more processes per node than GPUs "
                             f"({torch.cuda.device_count()}); use --device cpu or fewer processes")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def sync_params(module: nn.Module) -> None:
    """Every rank starts from rank 0's parameters."""
    if world_size() > 1:
        for p in module.parameters():
            dist.broadcast(p.data, src=0)


def average_gradients(params) -> None:
    """Average gradients over ranks, one all_reduce over a flat buffer."""
    n = world_size()
    if n == 1:
        return
    params = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def average_tensor(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor (TRPO's gradients and Hessian-vector products, KL, losses)."""
    if world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= world_size()
    return x


def average_scalar(x: float) -> float:
    if world_size() == 1:
        return float(x)
    return float(average_tensor(torch.tensor([float(x)], dtype=torch.float64))[0])


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (a stop request seen by one process)."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0] > 0)


def global_mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if world_size() == 1:
        return float(x.mean()), float(x.std())
    t = torch.tensor([x.sum(), (x * x).sum(), x.size], dtype=torch.float64)
    dist.all_reduce(t)
    mean = t[0] / t[2]
    return float(mean), float(torch.sqrt(torch.clamp(t[1] / t[2] - mean * mean, min=0.0)))


def reduce_stats(values: dict[str, list[float]], spec: dict[str, str]) -> dict[str, float]:
    """Spinning Up's columns over all ranks' values. `spec` maps a name to 'avg' (one column) or
    'dist' (Average/Std/Max/Min). Every column is always present (NaN when no rank had a value),
    so progress.txt keeps the same columns from the first epoch on."""
    rows = []
    for name in spec:
        x = np.asarray(values.get(name, []), dtype=np.float64)
        rows.append([x.sum(), (x * x).sum(), x.size,
                     x.min() if x.size else np.inf, -x.max() if x.size else np.inf])
    t = torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)
    if world_size() > 1:
        sums, mins = t[:, :3].contiguous(), t[:, 3:].contiguous()
        dist.all_reduce(sums)
        dist.all_reduce(mins, op=dist.ReduceOp.MIN)  # max is -min of the negated values
        t = torch.cat([sums, mins], dim=1)
    out: dict[str, float] = {}
    for (name, kind), (s, sq, n, lo, neg_hi) in zip(spec.items(), t.tolist()):
        mean = s / n if n else float("nan")
        if kind == "avg":
            out[name] = mean
            continue
        std = float(np.sqrt(max(sq / n - mean * mean, 0.0))) if n else float("nan")
        out.update({f"Average{name}": mean, f"Std{name}": std,
                    f"Max{name}": -neg_hi if n else float("nan"), f"Min{name}": lo if n else float("nan")})
    return out


def gather_objects(obj) -> list:
    """Every rank's `obj`, on every rank."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def param_checksum(module: nn.Module) -> str:
    """SHA-256 of all parameters' bytes: equal on every rank when data parallelism is sound."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def split_steps(steps_per_epoch: int, num_envs: int) -> int:
    """Steps per environment in this process: steps_per_epoch / (processes x envs), at least 1."""
    return max(1, steps_per_epoch // (world_size() * num_envs))
