"""The whole process as a user meets it: `spintui train` against a Stable-Baselines3 script, wall seconds and ratio.

    .venv/bin/pip install -e '.[bench]'        # stable-baselines3
    .venv/bin/python benchmarks/bench_offpolicy_process.py [--algos sac,td3] [--steps 20000] [--rounds 1]

Each run is one fresh process timed from start to exit (imports, set-up, training, spintui's test
episodes, logging and checkpoints included), each tool at its own default thread settings (no
OMP_NUM_THREADS, no --threads). spintui runs its CLI exactly as a user would: `spintui train ALGO --env
Pendulum-v1 --steps N --headless` at Spinning Up's defaults (10,000 uniform random steps, updates from
step 1,000, every 50 steps 50 gradient steps, 10 test episodes per 4,000-step epoch). SB3 gets the same
networks and hyperparameters (bench_offpolicy.py lists them), learning_starts 1,000 so that it does the
same number of gradient steps (its random phase is shorter: it acts with its policy from step 1,000),
and no evaluation. Runs of the two tools alternate within a round. Prints the load (`uptime`) before
and after, each run's seconds, and per algorithm the median seconds and SB3 / spintui.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_ID = "Pendulum-v1"

SB3_SCRIPT = """
import sys
import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.noise import NormalActionNoise

algo, steps = sys.argv[1], int(sys.argv[2])
env = gym.make("{env}")
common = dict(learning_rate=1e-3, buffer_size=1_000_000, learning_starts=1000, batch_size=100, tau=0.005,
              gamma=0.99, train_freq=50, gradient_steps=50, policy_kwargs=dict(net_arch=[256, 256]), seed=0,
              device="cpu", verbose=0)
if algo == "sac":
    model = SAC("MlpPolicy", env, ent_coef=0.2, **common)
else:
    act_dim = env.action_space.shape[0]
    model = TD3("MlpPolicy", env, policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5,
                action_noise=NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim)), **common)
model.learn(total_timesteps=steps)
""".replace("{env}", ENV_ID)


def spintui_command(algo: str, steps: int, runs_dir: str) -> list[str]:
    exe = Path(sys.executable).with_name("spintui")
    return [str(exe), "train", algo, "--env", ENV_ID, "--steps", str(steps), "--headless", "--runs-dir", runs_dir,
            "--device", "cpu"]


def timed(cmd: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{out.stderr[-2000:]}")
    return seconds


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="sac,td3")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"load before: {uptime()}", flush=True)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        for algo in args.algos.split(","):
            for r in range(args.rounds):
                for tool in ("spintui", "sb3") if r % 2 == 0 else ("sb3", "spintui"):
                    cmd = spintui_command(algo, args.steps, runs_dir) if tool == "spintui" else \
                        [sys.executable, "-c", SB3_SCRIPT, algo, str(args.steps)]
                    seconds = timed(cmd)
                    results.setdefault(algo, {}).setdefault(tool, []).append(seconds)
                    print(f"{algo} {tool:8s} round {r + 1}: {seconds:6.1f} s", flush=True)
            ours, theirs = statistics.median(results[algo]["spintui"]), statistics.median(results[algo]["sb3"])
            print(f"{algo}: spintui {ours:.1f} s, SB3 {theirs:.1f} s: spintui {theirs / ours:.2f}x faster "
                  f"({args.steps:,} steps, whole process, default threads)", flush=True)
    print(f"load after: {uptime()}", flush=True)


if __name__ == "__main__":
    main()
