"""Run store figures: late load of 1,000,000 scalar records, producer cost, tail latency.

    python benchmarks/bench_store.py [--records 1000000] [--repeats 5]

Each load is timed in a fresh interpreter (imports included), as a late viewer would pay it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run

LOAD = """
import time, sys
t0 = time.perf_counter()
from spintui.profiles.run_reader import RunReader
u = RunReader(sys.argv[1]).poll()
n = sum(len(s) for s in u.scalars.values())
print(time.perf_counter() - t0, n, len(u.records))
"""


def write_big_run(root: Path, records: int) -> Path:
    run = create_run(root, kind="train", name="big", algo="sac", env="Pendulum-v1", seed=0)
    names = ["LossQ", "LossPi", "Q1Vals", "Q2Vals", "LogPi", "Alpha", "StepsPerSec", "TimeUpdate"]
    with RunWriter(run, heartbeat=False) as w:
        for i in range(records // len(names)):
            w.scalars({n: i * 0.001 for n in names}, i)
            if i % 200 == 0:
                w.episode(i, -1000.0 + i * 0.01, 200)
            if i % 10000 == 0:
                w.flush()
    return run


def producer_cost(n: int = 200_000) -> float:
    """Microseconds per scalar for RunWriter.scalars() with one value, background flushing on."""
    with tempfile.TemporaryDirectory() as d:
        run = create_run(d, kind="train", name="p", algo="sac", env="x", seed=0)
        w = RunWriter(run)
        t0 = time.perf_counter()
        for i in range(n):
            w.scalar("LossQ", 0.5, i)
        elapsed = time.perf_counter() - t0
        w.close()
    return elapsed / n * 1e6


def tail_latency(samples: int = 40, poll_s: float = 0.25) -> float:
    """Median seconds from a producer's log call to a polling reader seeing it."""
    with tempfile.TemporaryDirectory() as d:
        run = create_run(d, kind="train", name="t", algo="sac", env="x", seed=0)
        w = RunWriter(run)
        reader = RunReader(run)
        sent: dict[int, float] = {}
        seen: list[float] = []
        done = threading.Event()

        def poll():
            while not done.is_set():
                for rec in reader.poll().records:
                    if rec.get("kind") == "event":
                        seen.append(time.time() - sent[rec["seq"]])
                time.sleep(poll_s)

        t = threading.Thread(target=poll)
        t.start()
        for i in range(samples):
            sent[i] = time.time()
            w.event("tick", seq=i)
            time.sleep(0.137)
        time.sleep(1.5)
        done.set()
        t.join()
        w.close()
    return statistics.median(seen)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run = write_big_run(Path(d), args.records)
        size = sum(p.stat().st_size for p in run.iterdir() if p.is_file())
        times = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", LOAD, str(run)], capture_output=True, text=True, check=True)
            seconds, n, recs = out.stdout.split()
            times.append(float(seconds))
        print(f"late load of {int(n):,} scalar records + {int(recs):,} JSON records ({size / 1e6:.1f} MB): "
              f"median {statistics.median(times):.3f} s over {args.repeats} fresh processes "
              f"(min {min(times):.3f}, max {max(times):.3f})")
    print(f"producer cost: {producer_cost():.2f} us per scalar (buffered, background flush)")
    print(f"tail latency at 250 ms polling: median {tail_latency() * 1000:.0f} ms")


if __name__ == "__main__":
    main()
