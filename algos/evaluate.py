"""Run a trained run's saved deterministic policy: `spintui eval RUN`.

Generic over algorithms: each algorithm's module (algos/registry.py) exposes
``load_policy(checkpoint, env, device) -> (obs -> action)``; this module loads the run's latest
checkpoint (weights only), builds its environment (with the run's env_kwargs, and any given for this
evaluation on top) and plays whole
episodes with that policy. With `video`, gymnasium's RecordVideo writes an MP4 per episode (the
environment renders rgb_array frames, so no display is needed; moviepy, the `video` extra, encodes
them); rendering changes no observation, action or reward, so the returns are those of a run
without video.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from spintui.errors import CommandFailed
from spintui.profiles.store import RunPaths, read_manifest


class EvalError(CommandFailed):
    """A run that cannot be evaluated (no checkpoint, unknown algorithm): one line for the user."""


def make_eval_env(env_id: str, env_kwargs: dict, render: bool, video: Path | None, name: str):
    """The run's environment: plain, rendering to a window, or recording every episode to `video`."""
    from spintui.algos.envs import make_env

    if video is None:
        return make_env(env_id, env_kwargs, render_mode="human") if render else make_env(env_id, env_kwargs)
    import warnings

    import gymnasium as gym

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off screen, without a complaint
    env = make_env(env_id, env_kwargs, render_mode="rgb_array")
    try:
        with warnings.catch_warnings():  # a second recording replaces the first one's files: expected
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            return gym.wrappers.RecordVideo(env, str(video), episode_trigger=lambda episode: True,
                                            name_prefix=name, disable_logger=True)
    except gym.error.DependencyNotInstalled:
        env.close()
        raise EvalError("--video needs moviepy: pip install 'spintui[video]'") from None


def evaluate(run_dir: Path | str, episodes: int = 10, render: bool = False, seed: int = 10_000,
             device: str = "cpu", video: Path | str | None = None, env_kwargs: dict | None = None) -> dict:
    """Play `episodes` episodes with the run's deterministic policy; returns returns, lengths, mean, std."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    algo, env_id = manifest.get("algo"), manifest.get("env")
    if manifest.get("kind") != "train" or not algo or not env_id:
        raise EvalError(f"{run_dir.name} is not a training run; eval needs a run made by `spintui train`")
    checkpoint_path = RunPaths(run_dir).latest_checkpoint
    if not checkpoint_path.is_file():
        raise EvalError(f"{run_dir.name} has no checkpoint yet ({checkpoint_path} is missing); "
                        "checkpoints are written at the end of each epoch")
    if episodes < 1:
        raise EvalError(f"episodes must be at least 1, got {episodes}")
    from spintui.algos.registry import ALGORITHMS

    if algo not in ALGORITHMS:
        raise EvalError(f"algorithm {algo!r} of {run_dir.name} is not available in this spintui")
    module = ALGORITHMS[algo].load()

    from spintui.algos.core import load_checkpoint, resolve_device

    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(checkpoint_path, map_location=torch_device)
    video = None if video is None else Path(video)
    env_kwargs = {**(manifest.get("config", {}).get("env_kwargs") or {}), **(env_kwargs or {})}
    env = make_eval_env(env_id, env_kwargs, render, video, run_dir.name)
    max_ep_len = int(checkpoint.get("config", {}).get("max_ep_len") or 0)
    try:
        policy = module.load_policy(checkpoint, env, torch_device)
        returns, lengths = [], []
        for i in range(episodes):
            obs, _ = env.reset(seed=seed) if i == 0 else env.reset()
            if i == 0:
                env.action_space.seed(seed)
            ep_ret, ep_len, done = 0.0, 0, False
            while not done:
                obs, rew, terminated, truncated, _ = env.step(policy(obs))
                ep_ret += float(rew)
                ep_len += 1
                done = terminated or truncated or (max_ep_len and ep_len >= max_ep_len)
            returns.append(ep_ret)
            lengths.append(ep_len)
    finally:
        env.close()
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    return {
        "run": run_dir.name,
        "path": str(run_dir),
        "algo": algo,
        "env": env_id,
        "env_kwargs": env_kwargs,
        "checkpoint_step": int(checkpoint.get("step", 0)),
        "episodes": episodes,
        "seed": seed,
        "device": str(torch_device),
        "returns": returns,
        "lengths": lengths,
        "mean_return": mean,
        "std_return": std,
        "videos": sorted(str(p) for p in video.glob("*.mp4")) if video is not None else [],
    }
