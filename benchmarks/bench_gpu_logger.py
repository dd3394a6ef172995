"""What the 1 Hz GPU logger costs a trainer: SAC steps/s with and without it, in one process.

Without a GPU the logger replays recorded samples (tests/data/gpu_samples_h200.json) through the
sampler's interface, so what is measured is the logger's own work (its thread waking once a
second, building the record, the writer's append), not NVML's calls (about 30 us a sample on an
H200, NOTES.md). Rounds alternate which mode runs first; medians are reported. Also timed: one
sample's cost on the logging thread, which at 1 Hz is the trainer's share of a core it can lose.

    .venv/bin/python benchmarks/bench_gpu_logger.py --rounds 5 --steps 3000
    .venv/bin/python benchmarks/bench_gpu_logger.py --nvml   # on a GPU machine: the real sampler
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from spintui.algos.config import make_config
from spintui.algos.registry import algorithm
from spintui.profiles import gpu
from spintui.profiles.gpu_history import RecordedGpuSampler, gpu_record
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "gpu_samples_h200.json"


def opener(nvml: bool):
    return gpu.open_gpu_sampler if nvml else RecordedGpuSampler(SAMPLES).opener()


def one_run(root: Path, steps: int, logged: bool, nvml: bool, interval: float) -> tuple[float, int]:
    cfg = make_config("sac", dict(env="Pendulum-v1", steps=steps, update_after=100, start_steps=100,
                                  num_test_episodes=0, threads=1, steps_per_epoch=steps))
    rd = create_run(root, kind="train", algo="sac", env="Pendulum-v1")
    run = RunWriter(rd)
    logger = gpu.GpuLogger(run, interval=interval, open_sampler=opener(nvml)).start() if logged else None
    start = time.perf_counter()
    algorithm("sac").load().train(cfg, run)
    elapsed = time.perf_counter() - start
    samples = 0
    if logger is not None:
        logger.stop()
        samples = logger.samples
    run.close()
    return steps / elapsed, samples


def per_sample_cost(nvml: bool, n: int = 2000) -> float:
    """Seconds of the logging thread's work per sample: sample, record, append."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunWriter(create_run(tmp, kind="train", algo="sac"), heartbeat=False)
        sampler, _ = opener(nvml)()
        start = time.thread_time()
        for _ in range(n):
            run.log("gpu", **gpu_record(sampler.sample(1)))
        cost = (time.thread_time() - start) / n
        sampler.close()
        run.close()
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--nvml", action="store_true", help="sample the real GPU through NVML")
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(Path(tmp), 300, False, args.nvml, args.interval)  # warm-up: imports, the compiled update
        for r in range(args.rounds):
            for logged in ((False, True) if r % 2 == 0 else (True, False)):
                rate, samples = one_run(Path(tmp), args.steps, logged, args.nvml, args.interval)
                rates[logged].append(rate)
                print(f"round {r + 1} {'logger on ' if logged else 'logger off'}: {rate:7.1f} steps/s"
                      + (f" ({samples} samples)" if logged else ""), flush=True)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    cost = per_sample_cost(args.nvml)
    print(f"median steps/s: off {off:.1f}, on {on:.1f}: {100 * (off - on) / off:+.2f}% with the logger "
          f"(spread of off: {min(rates[False]):.1f}-{max(rates[False]):.1f})")
    print(f"one sample on the logging thread: {cost * 1e6:.0f} us of CPU, "
          f"{100 * cost / args.interval:.3f}% of a core at {1 / args.interval:g} Hz")


if __name__ == "__main__":
    main()
