"""Full-budget learning results of DDPG, TD3 and SAC: Spinning Up's defaults, 50,000 env steps.

    .venv/bin/python benchmarks/learning_offpolicy.py                       # 3 algos x 3 seeds (hours on 2 cores)
    .venv/bin/python benchmarks/learning_offpolicy.py --algos sac --seeds 0 --steps 50000

Every setting is Spinning Up's default (start_steps 10,000, epochs of 4,000 steps, 10 deterministic
test episodes per epoch); only the total is cut to `--steps`. Each run is a normal run directory under
`--runs-dir` (inspect with `spintui runs` / `spintui watch`). Prints the deterministic test return
of the last epoch and the best epoch per run, and the mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ENV_ID = "Pendulum-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="sac,td3,ddpg")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--env", default=ENV_ID)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/learning_offpolicy"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from spintui.algos.config import config_to_dict, make_config
    from spintui.algos.launch import train_run
    from spintui.profiles.store import RunPaths, create_run

    summary = {}
    for algo in args.algos.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            cfg = make_config(algo, {"env": args.env, "steps": args.steps, "seed": seed, "threads": args.threads})
            run_dir = create_run(args.runs_dir, kind="train", algo=algo, env=args.env, seed=seed,
                                 config=config_to_dict(cfg))
            start = time.perf_counter()
            train_run(run_dir)  # as `spintui train` runs it: Ctrl-C stops cleanly with a checkpoint
            seconds = time.perf_counter() - start
            epochs = [json.loads(line) for line in RunPaths(run_dir).metrics.read_text().splitlines()
                      if '"kind":"epoch"' in line]
            test = [e["stats"]["AverageTestEpRet"] for e in epochs]
            if not test:  # stopped before its first epoch
                continue
            summary.setdefault(algo, []).append(test[-1])
            steps = epochs[-1]["step"] if epochs else 0
            print(f"{algo:4s} seed {seed}: {steps:,} steps, final test return {test[-1]:8.1f}, best {max(test):8.1f}, "
                  f"{steps / seconds:6.1f} steps/s, run {run_dir}", flush=True)
        finals = summary.get(algo)
        if not finals:
            continue
        spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
        print(f"{algo}: final deterministic test return {statistics.mean(finals):.1f} +- {spread:.1f} "
              f"over {len(finals)} seed(s) at {args.steps:,} steps", flush=True)


if __name__ == "__main__":
    main()
