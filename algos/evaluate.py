"""Run a trained run's saved deterministic policy: `spintui eval RUN`.

Generic over algorithms: each algorithm's module (algos/registry.py) exposes
``load_policy(checkpoint, env, device) -> (obs -> action)``; this module loads the run's latest
checkpoint (weights only), builds its environment and plays whole episodes with that policy.
"""

from __future__ import annotations

import math
from pathlib import Path

from spintui.errors import CommandFailed
from spintui.profiles.store import RunPaths, read_manifest


class EvalError(CommandFailed):
    """A run that cannot be evaluated (no checkpoint, unknown algorithm): one line for the user."""


def evaluate(run_dir: Path | str, episodes: int = 10, render: bool = False, seed: int = 10_000,
             device: str = "cpu") -> dict:
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
    from spintui.algos.envs import make_env

    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(checkpoint_path, map_location=torch_device)
    env = make_env(env_id, render_mode="human") if render else make_env(env_id)
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
        "checkpoint_step": int(checkpoint.get("step", 0)),
        "episodes": episodes,
        "seed": seed,
        "device": str(torch_device),
        "returns": returns,
        "lengths": lengths,
        "mean_return": mean,
        "std_return": std,
    }
