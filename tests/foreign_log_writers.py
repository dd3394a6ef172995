"""Logs of other tools for the tests: a real Stable-Baselines3 run, a SummaryWriter run written as
CleanRL writes it, and a Spinning Up output directory written as its EpochLogger writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SB3_STEPS = 2048
SB3_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    log_dir, steps = sys.argv[1], int(sys.argv[2])
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu",
                tensorboard_log=log_dir)
    evaluation = EvalCallback(make_vec_env("CartPole-v1", n_envs=1, seed=1), eval_freq=512, n_eval_episodes=2,
                              verbose=0)
    model.learn(steps, callback=evaluation)
""")


def sb3_ppo_log(log_dir: Path, steps: int = SB3_STEPS) -> Path:
    """Train Stable-Baselines3's PPO on CartPole-v1 for `steps` (rollouts of 128) with
    tensorboard_log=log_dir and an evaluation every 512 steps; returns the run's directory (log_dir/PPO_1)."""
    out = subprocess.run([sys.executable, "-c", SB3_SCRIPT, str(log_dir), str(steps)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return log_dir / "PPO_1"


CLEANRL_PARAMS = {"exp_name": "ppo", "seed": 1, "env_id": "CartPole-v1", "learning_rate": 0.00025,
                  "total_timesteps": 500000, "num_envs": 4, "gamma": 0.99, "torch_deterministic": True}


def cleanrl_writer(runs_dir: Path, seed: int = 1, started: int = 1700000000):
    """A torch SummaryWriter in CleanRL's run directory (`ENV__EXP__SEED__TIME`), its hyperparameters
    text written as CleanRL writes it."""
    from torch.utils.tensorboard import SummaryWriter

    params = {**CLEANRL_PARAMS, "seed": seed}
    writer = SummaryWriter(str(runs_dir / f"{params['env_id']}__{params['exp_name']}__{seed}__{started}"))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % "\n".join(f"|{k}|{v}|" for k, v in params.items()))
    return writer


def cleanrl_points(writer, steps, seed: int = 1) -> None:
    """What CleanRL's PPO logs at each of `steps` (global steps): an episode's return and length,
    losses, SPS; then flushed."""
    for step in steps:
        writer.add_scalar("charts/episodic_return", 10.0 + step / 100 + seed, step)
        writer.add_scalar("charts/episodic_length", 10 + step // 100, step)
        writer.add_scalar("charts/learning_rate", 0.00025, step)
        writer.add_scalar("losses/value_loss", 50.0 / (1 + step / 1000), step)
        writer.add_scalar("losses/policy_loss", -0.01, step)
        writer.add_scalar("losses/approx_kl", 0.001, step)
        writer.add_scalar("charts/SPS", 1000 + step / 100, step)
    writer.flush()


SPINNINGUP_COLUMNS = ("Epoch", "AverageEpRet", "StdEpRet", "MaxEpRet", "MinEpRet", "EpLen", "AverageVVals",
                      "StdVVals", "MaxVVals", "MinVVals", "TotalEnvInteracts", "LossPi", "LossV", "DeltaLossPi",
                      "DeltaLossV", "Entropy", "KL", "ClipFrac", "StopIter", "Time")


def spinningup_row(epoch: int, seed: int = 0) -> list:
    """One epoch of Spinning Up's PPO as its logger holds it (numpy floats, str() when written)."""
    import numpy as np

    ret = np.float32(-500.0 + 40.0 * epoch + seed)
    return [epoch, ret, np.float32(30.0), ret + 50, ret - 50, 200.0, np.float32(-3.5), 1.0, 2.0, -9.0,
            4000 * (epoch + 1), np.float32(-0.01 * epoch), np.float32(100.0 / (epoch + 1)), 0.0, -1.5, 1.2, 0.004,
            0.05, 79, 3.5 * (epoch + 1)]


def spinningup_dir(root: Path, exp: str = "ppo-pendulum", seed: int = 0, epochs: int = 5) -> Path:
    """`root/EXP/EXP_sSEED` with config.json and progress.txt as Spinning Up's EpochLogger writes them."""
    out = root / exp / f"{exp}_s{seed}"
    out.mkdir(parents=True)
    config = {"exp_name": exp, "seed": seed, "env_fn": "<function <lambda> at 0x7f>", "gamma": 0.99, "pi_lr": 0.0003,
              "steps_per_epoch": 4000, "logger_kwargs": {"output_dir": str(out), "exp_name": exp}}
    (out / "config.json").write_text(json.dumps(config, separators=(",", ":\t"), indent=4, sort_keys=True))
    with open(out / "progress.txt", "w") as f:
        for epoch in range(epochs):
            if epoch == 0:
                f.write("\t".join(SPINNINGUP_COLUMNS) + "\n")
            f.write("\t".join(map(str, spinningup_row(epoch, seed))) + "\n")
    return out


def age(path: Path, seconds: float) -> None:
    """Set the modification time of every file under `path` `seconds` into the past."""
    then = time.time() - seconds
    for root, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(root, name), (then, then))
