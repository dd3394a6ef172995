"""What every algorithm shares: networks, seeding, devices, epoch statistics, phase timing, checkpoints.

Kept small on purpose: each algorithm module reads top to bottom and takes only what it needs here.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spintui.algos.sparse_layers import SparseLinear
from spintui.profiles.store import RunPaths

# --------------------------------------------------------------------------------------------------
# Set-up


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a one-line error, not a crash later."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_env(env, seed: int):
    """Seed an env and its action space (uniform random exploration must be reproducible too)."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    return obs, info


# --------------------------------------------------------------------------------------------------
# Networks


def mlp(sizes: list[int] | tuple[int, ...], activation: type[nn.Module], output_activation: type[nn.Module] = nn.Identity,
        sparse=None, name: str = "") -> nn.Sequential:
    """Spinning Up's mlp(): Linear layers with `activation` between them. With `sparse` (a
    sparse_layers.SparseSpec) the hidden-to-hidden layers are block-sparse, laid out for net `name`."""
    layers: list[nn.Module] = []
    for j in range(len(sizes) - 1):
        act = activation if j < len(sizes) - 2 else output_activation
        if sparse is not None and 0 < j < len(sizes) - 2:
            linear = SparseLinear(sizes[j], sizes[j + 1], sparse.layout(name, j, sizes[j], sizes[j + 1]))
        else:
            linear = nn.Linear(sizes[j], sizes[j + 1])
        layers += [linear, act()]
    return nn.Sequential(*layers)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------------
# Epoch statistics and phase timing


class EpochStats:
    """Collect values during an epoch; summarize them with Spinning Up's column names.

    ``add(EpRet=...)`` then ``summary()`` gives AverageEpRet, StdEpRet, MaxEpRet, MinEpRet for
    distributions, or the plain name for values marked ``average_only``.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = {}

    def add(self, **values: float) -> None:
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float().cpu().numpy()
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            self._values.setdefault(key, []).extend(arr.tolist())

    def values(self, key: str) -> list[float]:
        return self._values.get(key, [])

    def summary(self, with_min_max: tuple[str, ...] = (), average_only: tuple[str, ...] = ()) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, vals in self._values.items():
            if not vals:
                continue
            arr = np.asarray(vals)
            if key in average_only:
                out[key] = float(arr.mean())
                continue
            out[f"Average{key}"] = float(arr.mean())
            out[f"Std{key}"] = float(arr.std())
            if key in with_min_max:
                out[f"Max{key}"] = float(arr.max())
                out[f"Min{key}"] = float(arr.min())
        return out

    def clear(self) -> None:
        self._values.clear()


class PhaseTimer:
    """Wall time per phase (env stepping, acting, updates, logging), reset every epoch."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start

    def summary(self, prefix: str = "Time") -> dict[str, float]:
        return {f"{prefix}{name[0].upper()}{name[1:]}": seconds for name, seconds in self.totals.items()}

    def reset(self) -> None:
        self.totals.clear()


# --------------------------------------------------------------------------------------------------
# Checkpoints (weights only: loading a checkpoint can never run code)

CHECKPOINT_FORMAT = 2  # 2 adds what resuming needs (algos/resume.py); format 1 had no "format" key


def checkpoint_dir(run_dir: Path | str) -> Path:
    path = RunPaths(run_dir).checkpoints
    path.mkdir(exist_ok=True)
    return path


class PendingCheckpoint:
    """Checkpoint files written under temporary names. `commit()` moves them into place, latest.pt
    last, so latest.pt never names a file that is not there; then it removes the replay buffers
    latest.pt no longer names and the temporary files of trainers that were killed."""

    def __init__(self, directory: Path, moves: list[tuple[Path, Path]]):
        self.directory, self.moves = directory, moves
        self.path = moves[-1][1]

    def commit(self) -> Path:
        for tmp, final in self.moves:
            os.replace(tmp, final)
        keep = {final.name for _, final in self.moves}
        for stale in self.directory.glob("replay-*.pt"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
        for stale in self.directory.glob(".*.tmp"):
            if stale.name.split(".")[-2] != str(os.getpid()):
                stale.unlink(missing_ok=True)
        return self.path


def save_checkpoint(run_dir: Path | str, *, algo: str, config: dict, step: int, epoch: int,
                    modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    extra: dict | None = None, resume: dict | None = None, sidecars: dict[str, dict] | None = None,
                    commit: bool = True) -> PendingCheckpoint:
    """Write checkpoints/latest.pt (with `resume`'s fields, algos/resume.py) and `sidecars` (file name
    -> state, e.g. the replay buffer) under temporary names; moved into place now, or by the returned
    PendingCheckpoint's `commit()` when `commit` is false."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "algo": algo,
        "config": config,
        "step": int(step),
        "epoch": int(epoch),
        "modules": {name: m.state_dict() for name, m in modules.items()},
        "optimizers": {name: o.state_dict() for name, o in (optimizers or {}).items()},
        "extra": extra or {},
        **(resume or {}),
    }
    directory = checkpoint_dir(run_dir)
    moves = []
    for name, obj in [*(sidecars or {}).items(), (RunPaths(run_dir).latest_checkpoint.name, state)]:
        final = directory / name
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        torch.save(obj, tmp)
        moves.append((tmp, final))
    pending = PendingCheckpoint(directory, moves)
    if commit:
        pending.commit()
    return pending


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file or a run directory's latest checkpoint, with weights_only=True."""
    path = Path(path)
    if path.is_dir():
        path = RunPaths(path).latest_checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)
