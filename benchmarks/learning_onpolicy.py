"""Full-budget learning curves of VPG, PPO and TRPO at Spinning Up's defaults (3 seeds).

    .venv/bin/python benchmarks/learning_onpolicy.py [--algos vpg,ppo,trpo] [--envs CartPole-v1]
        [--seeds 0,1,2] [--epochs 50] [--jobs 2] [--runs-dir runs/learning] [--set KEY=VALUE ...]

Each (algo, env, seed) trains in its own process with one torch thread, as a normal run under
--runs-dir (so `spintui watch` can show them). Prints AverageEpRet every 10% of the budget and the
final mean +- std over seeds, and writes summary.json next to the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spintui.profiles.store import RunPaths


def train_one(algo: str, env: str, seed: int, epochs: int, runs_dir: Path, overrides: list[str]) -> Path:
    name = f"{algo}_{env}_s{seed}"
    cmd = [sys.executable, "-m", "spintui.tui.cli", "train", algo, "--env", env, "--seed", str(seed),
           "--epochs", str(epochs), "--threads", "1", "--device", "cpu", "--headless",
           "--runs-dir", str(runs_dir), "--name", name]
    for item in overrides:
        key, value = item.split("=", 1)
        cmd += [f"--{key.replace('_', '-')}", value]
    subprocess.run(cmd, check=True, capture_output=True)
    return runs_dir / name


def curve(run_dir: Path) -> list[tuple[int, float]]:
    out = []
    for line in RunPaths(run_dir).metrics.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        if rec.get("kind") == "epoch":
            out.append((rec["step"], rec["stats"].get("AverageEpRet")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="vpg,ppo,trpo")
    parser.add_argument("--envs", default="CartPole-v1")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/learning"))
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE hyperparameter override")
    args = parser.parse_args()
    jobs = [(a, e, int(s)) for a in args.algos.split(",") for e in args.envs.split(",") for s in args.seeds.split(",")]
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        dirs = list(pool.map(lambda j: train_one(*j, args.epochs, args.runs_dir, args.set), jobs))
    summary = {}
    for (algo, env, seed), run_dir in zip(jobs, dirs):
        points = curve(run_dir)
        summary.setdefault(f"{algo} {env}", {})[seed] = points
        marks = points[max(0, len(points) // 10 - 1)::max(1, len(points) // 10)]
        print(f"{algo:5s} {env} seed {seed}: " + "  ".join(f"{s // 1000}k:{r:.0f}" for s, r in marks if r is not None))
    for key, seeds in summary.items():
        finals = [pts[-1][1] for pts in seeds.values() if pts and pts[-1][1] is not None]
        if finals:
            spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
            print(f"{key}: final AverageEpRet {statistics.mean(finals):.1f} +- {spread:.1f} over {len(finals)} seeds")
    (args.runs_dir / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
