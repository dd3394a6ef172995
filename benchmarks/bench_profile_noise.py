"""Run-to-run noise of `spintui profile blocksparse`: the basis of --compare's default threshold.

    python benchmarks/bench_profile_noise.py                  # 5 runs of the --quick CPU grid, 1 thread
    python benchmarks/bench_profile_noise.py --runs 8 --threads 2 --out noise.json

Runs the same grid several times, one profile run each (under a temporary runs directory), then for
every case and every ordered pair of runs takes (new, baseline) and the change t_new / t_base - 1 of
our median time (what --compare compares; the speedup over dense is shown for reference). A pair of
runs of unchanged code is what a CI gate sees, so the share of pairs past 1 + threshold is the rate
at which a case of an unchanged kernel is flagged "slower", and 1 - (1 - rate)^cases the chance that
a whole run is reported as regressed. --compare's default threshold (sweep_config.NOISE_THRESHOLD)
came from this script.
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

from spintui.profiles import kernel_sweep as ks, sweep_config as sc, sweep_results as sr
from spintui.profiles.store import create_run


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def changes(runs: list[dict[tuple, dict]], key: str) -> list[float]:
    """new / baseline - 1 for every case and every ordered pair of runs."""
    out = []
    for case in runs[0]:
        values = [r[case][key] for r in runs if r.get(case, {}).get(key)]
        out += [new / base - 1.0 for new, base in itertools.permutations(values, 2)]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the per-run cases and the percentiles as JSON")
    args = p.parse_args(argv)
    cfg = sc.resolve_config(quick=True, device="auto", threads=args.threads)
    print(f"grid: {cfg.n_grid} cases ({sc.GRIDS[cfg.device + '-quick']}), {cfg.device}, "
          f"{cfg.threads} thread(s), {args.runs} runs", flush=True)
    runs, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            rd = create_run(tmp, kind="profile", benchmark=sc.BENCHMARK, config=cfg.to_dict())
            t0 = time.monotonic()
            result = ks.run_sweep(rd)
            seconds.append(time.monotonic() - t0)
            runs.append({sr.case_key(c): c for c in result.cases if c["status"] == "ok"})
            print(f"run {i + 1}: {len(result.cases)} cases in {seconds[-1]:.1f} s", flush=True)
    report = {"runs": args.runs, "cases": cfg.n_grid, "threads": cfg.threads, "device": cfg.device,
              "sweep_seconds": seconds}
    for key in ("s_ours", "speedup"):
        values = changes(runs, key)
        pct = {f"p{int(q * 100)}": percentile(values, q) for q in (0.5, 0.9, 0.95, 0.99)}
        pct["max"] = max(values)
        report[key] = pct
        print(f"{key:8} change between runs ({len(values)} pairs): "
              + "  ".join(f"{k} {v:+.1%}" for k, v in pct.items()))
    values = changes(runs, "s_ours")
    report["flag_rate"] = {}
    for threshold in (0.15, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5):
        rate = sum(v > threshold for v in values) / len(values)
        report["flag_rate"][threshold] = rate
        print(f"threshold {threshold:4.2f}: a case flagged slower in {rate:6.2%} of pairs; a {cfg.n_grid}-case run "
              f"of unchanged code reported as regressed ~{1 - (1 - rate) ** cfg.n_grid:.0%} of the time")
    print(f"sweep time: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**report, "per_run": [[c for c in r.values()] for r in runs]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
