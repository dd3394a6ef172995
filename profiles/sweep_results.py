"""A sweep's recorded cases: reading them back, the profile JSON, and comparing with a baseline.

Profile JSON (`--json FILE`, `profile_json`), schema_version 1::

    {
      "schema_version": 1,
      "kind": "spintui.blocksparse_profile",
      "run": {"name", "path", "status", "start_time", "end_time"},
      "environment": {"device": "cpu" | "cuda", "device_name", "threads", "driver", "torch", "triton",
                      "python", "spintui", "git_revision", "host", "launch_overhead_s", "timer"},
      "config": {...},                   # the sweep's options, as in run.json
      "cases": [CASE, ...],              # in the order they finished
      "compare": null | {"baseline", "baseline_path", "threshold", "counts": {verdict: n}, "regressions"}
    }

    CASE = {
      "op": "matmul" | "softmax" | "attention",   # absent in profiles recorded before ops: "matmul"
      "mode": "sdd" | "dsd" | "dds" | null (null: softmax, attention), "M", "N", "K", "block": int,
                                         # softmax: an M x N layout, K unused; attention: M = N tokens,
                                         # head dim K (kernels/bench_ops.py)
      "density": float (requested), "density_actual": float | null (of the layout timed),
      "dtype": "fp32" | "fp16" | "bf16" | "fp64", "layout": "random" | "banded" | "strided",
      "backward": bool,                  # true: times are forward + backward through autograd
      "status": "ok" | "WRONG" | "error", "error": str | null,
      "max_rel_error", "tolerance": float | null,
      "s_dense", "s_ours", "s_torch_bsr", "s_ours_graph": median seconds | null,
      "s_flex": median seconds of compiled FlexAttention with the same block mask | null (attention on CUDA),
      "tflops_effective": useful TFLOP/s of ours (2*M*N*K*density, attention 4*M*M*K*density; x3 with
                          backward) | null (always for softmax),
      "speedup": s_dense / s_ours | null,
      "fraction_of_ideal": speedup * density_actual | null (1.0: time saved = work skipped),
      "speedup_vs_torch_bsr": s_torch_bsr / s_ours | null (torch BSR exists for dsd only),
      "sparse_bytes": block values + layout indices | null, "dense_bytes": dense equivalent | null,
      "launch_bound": bool | null, "backend": str | null, "threads": int | null,
      "compare": null | "faster" | "slower" | "same" | "new" | "WRONG" | "error",
      "baseline_s_ours": float | null, "change": s_ours / baseline_s_ours | null
    }

Cases that are not "ok" have null for every timing and derived column.

Comparing profiles: cases match by (op, mode, M, N, K, block, density, dtype, layout, backward); a case
is slower when s_ours / baseline > 1 + threshold, faster when below 1 / (1 + threshold). The default
threshold (sweep_config.NOISE_THRESHOLD) was measured; see its comment.
"""

from __future__ import annotations

from pathlib import Path

from spintui.profiles.run_reader import RunReader
from spintui.profiles.store import read_manifest, write_json_atomic
from spintui.profiles.sweep_config import NOISE_THRESHOLD

SCHEMA_VERSION = 1
PROFILE_KIND = "spintui.blocksparse_profile"
CASE_KEY = ("op", "mode", "M", "N", "K", "block", "density", "dtype", "layout", "backward")
VERDICTS = ("faster", "slower", "same", "new", "WRONG", "error")
REGRESSIONS = ("slower", "WRONG", "error")


def case_key(case: dict) -> tuple:
    """The identity of a case across profiles (the requested density, not the layout's; no op: matmul)."""
    return (case.get("op", "matmul"), case["mode"], int(case["M"]), int(case["N"]), int(case["K"]), int(case["block"]),
            round(float(case["density"]), 6), case["dtype"], case.get("layout", "random"),
            bool(case.get("backward", False)))


# --------------------------------------------------------------------------------------------------
# Comparing with a baseline profile


def compare_case(rec: dict, baseline: dict[tuple, dict], threshold: float) -> tuple[str, float | None, float | None]:
    """(verdict, baseline s_ours, change = s_ours / baseline) for one finished case."""
    if rec.get("status") != "ok":
        return rec.get("status", "error"), None, None
    base = baseline.get(case_key(rec))
    if base is None or base.get("status") != "ok" or not base.get("s_ours"):
        return "new", None, None
    change = rec["s_ours"] / base["s_ours"]
    if change > 1.0 + threshold:
        verdict = "slower"
    elif change < 1.0 / (1.0 + threshold):
        verdict = "faster"
    else:
        verdict = "same"
    return verdict, base["s_ours"], change


def compare_profiles(cases: list[dict], baseline_cases: list[dict], threshold: float = NOISE_THRESHOLD) -> dict:
    """Verdicts for recorded cases against recorded baseline cases: {"cases": [...], "counts", "regressions"}."""
    baseline = {case_key(c): c for c in baseline_cases}
    out = []
    for rec in cases:
        verdict, base, change = compare_case(rec, baseline, threshold)
        out.append({**rec, "compare": verdict, "baseline_s_ours": base, "change": change})
    counts = {v: sum(1 for c in out if c["compare"] == v) for v in VERDICTS}
    return {"cases": out, "counts": counts, "regressions": sum(counts[v] for v in REGRESSIONS),
            "threshold": threshold}


# --------------------------------------------------------------------------------------------------
# Reading profiles


def kernel_records(run_dir: Path | str) -> list[dict]:
    records = RunReader(run_dir).poll().records
    return [{k: v for k, v in r.items() if k not in ("kind", "time")} for r in records if r.get("kind") == "kernel"]


def profile_json(run_dir: Path | str) -> dict:
    """The whole profile in the documented schema (module docstring)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": PROFILE_KIND,
        "run": {"name": run_dir.name, "path": str(run_dir.resolve()), "status": manifest.get("status"),
                "start_time": manifest.get("start_time"), "end_time": manifest.get("end_time")},
        "environment": manifest.get("environment") or {},
        "config": manifest.get("config") or {},
        "cases": kernel_records(run_dir),
        "compare": manifest.get("compare"),
    }


def write_profile_json(run_dir: Path | str, path: Path | str) -> None:
    write_json_atomic(Path(path), profile_json(run_dir))

