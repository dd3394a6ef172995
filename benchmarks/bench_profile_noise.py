"""Run-to-run noise of `spintui profile blocksparse`: the basis of --compare's default threshold.

    python benchmarks/bench_profile_noise.py                  # 5 runs of the --quick CPU grid, 1 thread
    python benchmarks/bench_profile_noise.py --runs 8 --threads 2 --out noise.json

Runs the same grid several times, one profile run each (under a temporary runs directory), then for
every case and every pair of runs takes |log(t_i / t_j)| of our median time (what --compare
compares) and, for reference, of the speedup over dense. A pair of runs of unchanged code is what a
CI gate sees, so the percentiles of this pairwise change are the false-alarm rate of a threshold:
at the 95th percentile, about 1 case in 20 of an unchanged kernel would be flagged.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time

from spintui.profiles import kernel_sweep as ks
from spintui.profiles.store import create_run


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def spread(runs: list[dict[tuple, dict]], key: str) -> list[float]:
    out = []
    for case in runs[0]:
        values = [r[case][key] for r in runs if r.get(case, {}).get(key)]
        for x, y in itertools.combinations(values, 2):
            out.append(abs(math.log(x / y)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the per-run cases and the percentiles as JSON")
    args = p.parse_args(argv)
    cfg = ks.resolve_config(quick=True, device="auto", threads=args.threads)
    print(f"grid: {cfg.n_grid} cases ({ks.GRIDS[cfg.device + '-quick']}), {cfg.device}, "
          f"{cfg.threads} thread(s), {args.runs} runs", flush=True)
    runs, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            rd = create_run(tmp, kind="profile", benchmark=ks.BENCHMARK, config=cfg.to_dict())
            t0 = time.monotonic()
            result = ks.run_sweep(rd)
            seconds.append(time.monotonic() - t0)
            runs.append({ks.case_key(c): c for c in result.cases if c["status"] == "ok"})
            print(f"run {i + 1}: {len(result.cases)} cases in {seconds[-1]:.1f} s", flush=True)
    report = {"runs": args.runs, "cases": cfg.n_grid, "threads": cfg.threads, "device": cfg.device,
              "sweep_seconds": seconds}
    for key in ("s_ours", "speedup"):
        logs = spread(runs, key)
        pct = {f"p{int(q * 100)}": math.expm1(percentile(logs, q)) for q in (0.5, 0.9, 0.95, 0.99)}
        pct["max"] = math.expm1(max(logs))
        report[key] = pct
        print(f"{key:8} pairwise change between runs: " + "  ".join(f"{k} {v:.1%}" for k, v in pct.items()))
    print(f"sweep time: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**report, "per_run": [[c for c in r.values()] for r in runs]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
