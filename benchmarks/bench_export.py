"""Export speed and the cost of mirroring a training run to TensorBoard.

    .venv/bin/python benchmarks/bench_export.py                      # both parts
    .venv/bin/python benchmarks/bench_export.py --records 1000000 --runs 0      # export only
    .venv/bin/python benchmarks/bench_export.py --records 0 --runs 5 --steps 4000  # mirror only

1. Export: a run of `--records` scalar records (4 series) plus an episode per 1,000 steps and an epoch
   per 4,000, written through RunWriter; then `spintui export RUN --tensorboard DIR` and `--csv DIR`
   as a user runs them (a fresh process each, imports included), and the export functions alone.
2. Mirror: `spintui train sac --env Pendulum-v1 --steps N --headless` with and without
   `--tensorboard DIR`, runs alternating, each run's training time read from its last epoch's Time
   (inside the trainer: no interpreter start); prints the medians and the slowdown, and the CPU time
   the mirror thread itself used (its own count, printed to the run's output.log), which a busy
   machine's noise does not blur.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_run(runs_dir: Path, records: int) -> Path:
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import create_run

    run = create_run(runs_dir, kind="train", name="big", algo="sac", env="Pendulum-v1", seed=0,
                     config={"env": "Pendulum-v1", "seed": 0, "gamma": 0.99, "hidden_sizes": [256, 256]})
    rng = np.random.default_rng(0)
    steps = records // 4
    with RunWriter(run, heartbeat=False) as w:
        for step in range(steps):
            w.scalars({"LossQ": float(rng.random()), "LossPi": -step / 30.0, "Q1Vals": step * 1e-3,
                       "TimeUpdate": 0.004}, step)
            if step % 1000 == 999:
                w.episode(step, -1000.0 + step * 1e-3, 1000)
            if step % 4000 == 3999:
                w.epoch(step // 4000 + 1, step + 1, {"AverageEpRet": float(rng.normal()), "TotalEnvInteracts": step + 1})
                w.flush()
    return run


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(result.stderr)
    return time.perf_counter() - start


def bench_export(records: int, work: Path) -> None:
    from spintui.profiles.run_export import export_csv, export_tensorboard

    start = time.perf_counter()
    run = make_run(work / "runs", records)
    print(f"wrote a run of {records:,} scalar records in {time.perf_counter() - start:.1f} s")
    cli = [sys.executable, "-m", "spintui", "export", str(run)]
    tb = timed([*cli, "--tensorboard", str(work / "tb")])
    csv = timed([*cli, "--csv", str(work / "csv")])
    start = time.perf_counter()
    points = export_tensorboard(run, work / "tb2")
    tb_alone = time.perf_counter() - start
    start = time.perf_counter()
    export_csv(run, work / "csv2" / "big")
    csv_alone = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (work / "tb").rglob("*")) / 1e6
    print(f"spintui export --tensorboard: {tb:.2f} s end to end ({points:,} points, {size:.0f} MB); "
          f"export_tensorboard alone {tb_alone:.2f} s")
    print(f"spintui export --csv:         {csv:.2f} s end to end; export_csv alone {csv_alone:.2f} s")


def train_time(work: Path, steps: int, mirror: bool, index: int) -> float:
    runs_dir = work / "train"
    name = f"{'tb' if mirror else 'plain'}{index}"
    cmd = [sys.executable, "-m", "spintui", "train", "sac", "--env", "Pendulum-v1", "--steps", str(steps),
           "--steps-per-epoch", str(steps // 2), "--start-steps", "1000", "--num-test-episodes", "2",
           "--headless", "--runs-dir", str(runs_dir), "--name", name]
    if mirror:
        cmd += ["--tensorboard", str(work / "mirror")]
    timed(cmd)
    rows = [json.loads(line) for line in (runs_dir / name / "metrics.jsonl").read_text().splitlines()
            if '"kind":"epoch"' in line]
    if mirror:
        assert any((work / "mirror" / name).iterdir()), "no event file"
        log = (runs_dir / name / "output.log").read_text()
        busy = float(log.split("TensorBoard mirror: ")[1].split(", ")[1].split(" s")[0])
        MIRROR_CPU.append(busy / float(rows[-1]["stats"]["Time"]))
    return float(rows[-1]["stats"]["Time"])


MIRROR_CPU: list[float] = []  # the mirror thread's CPU time / the run's training time


def bench_mirror(runs: int, steps: int, work: Path) -> None:
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(runs):
        for mirror in ((False, True) if i % 2 == 0 else (True, False)):
            times[mirror].append(train_time(work, steps, mirror, i))
            print(f"  run {i} {'with' if mirror else 'without'} --tensorboard: {times[mirror][-1]:.2f} s", flush=True)
    plain, mirrored = statistics.median(times[False]), statistics.median(times[True])
    print(f"SAC Pendulum-v1, {steps:,} steps, {runs} runs each alternating: median training time "
          f"{plain:.2f} s without, {mirrored:.2f} s with --tensorboard: {100 * (mirrored / plain - 1):+.1f}%")
    if MIRROR_CPU:
        print(f"the mirror thread's own CPU time: {100 * statistics.median(MIRROR_CPU):.2f}% of the training time "
              f"(median; max {100 * max(MIRROR_CPU):.2f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="training runs with and without the mirror")
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        if args.records:
            bench_export(args.records, work)
        if args.runs:
            bench_mirror(args.runs, args.steps, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
