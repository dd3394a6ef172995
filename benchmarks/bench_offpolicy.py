"""Env steps per second of spintui's SAC / TD3 against Stable-Baselines3's, configured identically.

    .venv/bin/pip install -e '.[bench]'        # stable-baselines3
    .venv/bin/python benchmarks/bench_offpolicy.py --algos sac,td3 --steps 8000 --runs 3 --threads 1

Pendulum-v1, Spinning Up's defaults on both sides: (256, 256) ReLU nets, lr 1e-3, batch 100,
gamma 0.99, polyak 0.995 (SB3 tau 0.005), replay 1e6, updates from step 1000, every 50 steps 50
gradient steps (SB3 train_freq 50, gradient_steps 50), SAC alpha 0.2 (SB3 ent_coef 0.2), TD3 policy
delay 2, target noise 0.2 clipped at 0.5, exploration noise 0.1. Uniform random actions for the
first 1000 steps on both sides (SB3's learning_starts; spintui's start_steps is set to match).
spintui's gradient steps are its CPU default (`--update auto`: compiled C where a C compiler
exists); `--update torch` measures its eager PyTorch update instead. spintui's runs also log
everything into a real run directory and run Spinning Up's 10 deterministic test episodes after
every epoch inside the timed region (SB3 does neither), so the comparison is conservative for
spintui.

Each run is a fresh process pinned to `--threads` torch threads; runs of the two implementations
alternate (A B A B ...) so that a noisy, shared machine affects both alike. Reports the median
steps/s of each and their ratio, the same per second of the process's own CPU time (steadier when
other processes share the cores), and the final mean deterministic return (10 episodes) of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ENV_ID = "Pendulum-v1"


def run_spintui(algo: str, steps: int, seed: int, threads: int, start_steps: int, update: str = "auto") -> dict:
    import torch

    torch.set_num_threads(threads)
    from spintui.algos.config import config_to_dict, make_config
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import create_run

    cfg = make_config(algo, {"env": ENV_ID, "steps": steps, "seed": seed, "threads": threads,
                             "start_steps": start_steps, "device": "cpu", "update": update})
    import importlib

    module = importlib.import_module(f"spintui.algos.{algo}")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = create_run(tmp, kind="train", algo=algo, env=ENV_ID, seed=seed, config=config_to_dict(cfg))
        writer = RunWriter(run_dir)
        start, start_cpu = time.perf_counter(), time.process_time()
        row = module.train(cfg, writer)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        writer.close()
    return {"steps_per_sec": steps / elapsed, "seconds": elapsed, "cpu_seconds": cpu,
            "steps_per_cpu_sec": steps / cpu, "test_return": row["AverageTestEpRet"]}


def run_sb3(algo: str, steps: int, seed: int, threads: int, start_steps: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import gymnasium as gym
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise

    env = gym.make(ENV_ID)
    common = dict(learning_rate=1e-3, buffer_size=1_000_000, learning_starts=start_steps, batch_size=100,
                  tau=0.005, gamma=0.99, train_freq=50, gradient_steps=50,
                  policy_kwargs=dict(net_arch=[256, 256]), seed=seed, device="cpu", verbose=0)
    start, start_cpu = time.perf_counter(), time.process_time()
    if algo == "sac":
        model = SAC("MlpPolicy", env, ent_coef=0.2, **common)
    else:
        act_dim = env.action_space.shape[0]
        model = TD3("MlpPolicy", env, policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5,
                    action_noise=NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim)), **common)
    model.learn(total_timesteps=steps)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    eval_env = gym.make(ENV_ID)
    eval_env.reset(seed=seed + 1)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return {"steps_per_sec": steps / elapsed, "seconds": elapsed, "cpu_seconds": cpu,
            "steps_per_cpu_sec": steps / cpu, "test_return": float(mean)}


def child(args) -> None:
    if args.impl == "spintui":
        result = run_spintui(args.algo, args.steps, args.seed, args.threads, args.start_steps, args.update)
    else:
        result = run_sb3(args.algo, args.steps, args.seed, args.threads, args.start_steps)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="sac,td3")
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--start-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update", default="auto", choices=("auto", "native", "torch"),
                        help="spintui's gradient steps: auto (compiled C where it can run), native or torch (eager)")
    parser.add_argument("--json", default=None, help="Also write all results to this file.")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "ALGO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.impl, args.algo = args.child
        child(args)
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results: dict = {}
    for algo in args.algos.split(","):
        for i in range(args.runs):
            for impl in ("spintui", "sb3") if i % 2 == 0 else ("sb3", "spintui"):
                cmd = [sys.executable, __file__, "--child", impl, algo, "--steps", str(args.steps),
                       "--threads", str(args.threads), "--start-steps", str(args.start_steps),
                       "--seed", str(args.seed + i), "--update", args.update]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{impl} {algo} failed:\n{out.stderr[-2000:]}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault(algo, {}).setdefault(impl, []).append(res)
                print(f"{algo:4s} {impl:8s} seed {args.seed + i}: {res['steps_per_sec']:7.1f} steps/s "
                      f"({res['seconds']:.1f} s wall), {res['steps_per_cpu_sec']:7.1f} steps per CPU second, "
                      f"test return {res['test_return']:8.1f}", flush=True)
        ours = statistics.median(r["steps_per_sec"] for r in results[algo]["spintui"])
        theirs = statistics.median(r["steps_per_sec"] for r in results[algo]["sb3"])
        ours_cpu = statistics.median(r["steps_per_cpu_sec"] for r in results[algo]["spintui"])
        theirs_cpu = statistics.median(r["steps_per_cpu_sec"] for r in results[algo]["sb3"])
        ret_ours = [round(r["test_return"], 1) for r in results[algo]["spintui"]]
        ret_theirs = [round(r["test_return"], 1) for r in results[algo]["sb3"]]
        print(f"{algo}: spintui median {ours:.1f} steps/s, SB3 median {theirs:.1f} steps/s, "
              f"ratio {ours / theirs:.2f}x; per CPU second {ours_cpu:.1f} vs {theirs_cpu:.1f}, "
              f"ratio {ours_cpu / theirs_cpu:.2f}x (threads {args.threads}, {args.steps} steps, "
              f"--update {args.update}); "
              f"test returns spintui {ret_ours}, SB3 {ret_theirs}", flush=True)
        results[algo]["ratio"] = ours / theirs
        results[algo]["cpu_ratio"] = ours_cpu / theirs_cpu
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
