"""Resuming a run from its latest checkpoint: the state a checkpoint holds beyond the networks and
optimizers, putting it back, and checking that a run's checkpoint can be resumed at all.

A checkpoint (algos/core.py, format 2) that a run can resume from also holds:

    rng      {"torch": ByteTensor, "cuda": [ByteTensor, ...] (runs that used CUDA),
              "numpy": {"keys": int64 tensor, "pos", "has_gauss", "cached_gaussian"},
              "python": [version, [625 ints], gauss]}
    envs     {"train": ENV, "test": ENV} (the test env: off-policy runs), ENV = {"envs": [the PCG64
             state of each environment], "spaces": {"action_space": ..., "observation_space": ...}}
             where a PCG64 state is numpy's `bit_generator.state` dict (ints and strings)
    elapsed  seconds of training before the checkpoint (Spinning Up's Time column goes on from it)
    ranks    data-parallel runs: [{"rng", "envs"} of each process]
    replay   off-policy runs whose buffer was saved: {"file": "replay-STEP.pt", "rows", "bytes"}

All of it is tensors, lists, dicts, numbers and strings, so `torch.load(weights_only=True)` reads
it, and a checkpoint without these fields still loads for `spintui eval`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from spintui.errors import RunError
from spintui.profiles.store import RunPaths


class ResumeError(RunError):
    """A run that cannot be resumed (no checkpoint, a damaged one, one that predates resuming)."""


# --------------------------------------------------------------------------------------------------
# Random number generators and environments


def capture_rng() -> dict:
    """torch's, numpy's and Python's global generators (and CUDA's where it was used)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)},
             "python": [version, list(internal), gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _spaces(env) -> dict:
    names = ("action_space", "observation_space", "single_action_space", "single_observation_space")
    return {name: getattr(env, name) for name in names if hasattr(env, name)}


def env_state(env) -> dict:
    """The generators of an environment (each one of a gymnasium vector env) and of its spaces."""
    inner = [e.unwrapped for e in getattr(env, "envs", [env])]
    return {"envs": [e.np_random.bit_generator.state for e in inner],
            "spaces": {name: space.np_random.bit_generator.state for name, space in _spaces(env).items()}}


def restore_env_state(env, state: dict) -> None:
    inner = [e.unwrapped for e in getattr(env, "envs", [env])]
    if len(inner) != len(state["envs"]):
        raise ResumeError(f"the checkpoint holds {len(state['envs'])} environments' states, this run has {len(inner)}")
    for e, saved in zip(inner, state["envs"]):
        e.np_random.bit_generator.state = saved
    for name, space in _spaces(env).items():
        if name in state["spaces"]:
            space.np_random.bit_generator.state = state["spaces"][name]


def training_state(envs: dict, elapsed: float) -> dict:
    """What a checkpoint holds for resuming besides networks and optimizers (one process's)."""
    return {"rng": capture_rng(), "envs": {name: env_state(env) for name, env in envs.items()},
            "elapsed": float(elapsed)}


def restore_training_state(state: dict, envs: dict) -> None:
    """Put back `training_state(envs, ...)`; call it last, just before training goes on."""
    for name, env in envs.items():
        restore_env_state(env, state["envs"][name])
    restore_rng(state["rng"])


def restore_networks(checkpoint: dict, modules: dict, optimizers: dict) -> None:
    """Parameters and optimizer states, in place (views of the parameters stay valid)."""
    for name, module in modules.items():
        module.load_state_dict(checkpoint["modules"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])


# --------------------------------------------------------------------------------------------------
# Which checkpoint a run resumes from


def resume_checkpoint(run_dir: Path | str) -> dict | None:
    """The run's latest checkpoint if it can be resumed; None when it has none (start from scratch).

    ResumeError, one line naming the problem, for a checkpoint that cannot be read, one written
    before resuming existed, or one whose saved replay buffer is missing or damaged.
    """
    paths = RunPaths(run_dir)
    path, name = paths.latest_checkpoint, Path(run_dir).name
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ResumeError(f"{name}: its checkpoint {path} is damaged ({_first_line(exc)})") from None
    if not isinstance(checkpoint, dict) or not {"config", "step", "epoch", "modules"} <= checkpoint.keys():
        raise ResumeError(f"{name}: its checkpoint {path} is damaged (not a spintui checkpoint)")
    if "rng" not in checkpoint:
        raise ResumeError(f"{name}: its checkpoint predates resuming (no generator states); "
                          f"`spintui eval` still reads it")
    replay = checkpoint.get("replay")
    if replay:
        from spintui.algos.replay import load_buffer_file

        buffer = paths.checkpoints / str(replay.get("file"))
        try:
            load_buffer_file(buffer, mmap=True)
        except FileNotFoundError:
            raise ResumeError(f"{name}: the replay buffer its checkpoint names, {buffer}, is missing") from None
        except Exception as exc:
            raise ResumeError(f"{name}: the replay buffer {buffer} is damaged ({_first_line(exc)})") from None
    return checkpoint


def load_replay(checkpoint: dict, run_dir: Path | str) -> dict | None:
    """The replay buffer saved with `checkpoint`, None when it was not saved."""
    from spintui.algos.replay import load_buffer_file

    replay = checkpoint.get("replay")
    return load_buffer_file(RunPaths(run_dir).checkpoints / str(replay["file"])) if replay else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
