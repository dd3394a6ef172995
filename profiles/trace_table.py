"""Kernel tables of traced training: rows, the trace file, comparing with a baseline, profile JSON.

A trainer run with `--trace` logs one `trace` record per capture (algos/trace_capture.py)::

    {"kind": "trace", "file": "trace-3-4.json.gz", "blocks": [3, 4], "update_s": float,
     "device": "cpu" | "cuda", "update": "compiled C update" | "PyTorch update", "rows": [ROW, ...]}

    ROW = {"name": str, "source": "cpu" | "cuda" | "C update", "calls": int, "self_s": float,
           "total_s": float, "share": self_s / update_s, "flops": int | null}

`update_s` is the wall time of the traced blocks; rows are sorted by self time, largest first. On
CUDA, operator rows (host time) and kernel rows (device time) overlap, so shares may sum past 1. C
update rows are the compiled update's own phase timings (exclusive), which torch.profiler cannot
see inside. Profile JSON (`spintui profile train --json`), schema_version 1, kind
"spintui.train_profile": like the blocksparse profile (profiles/sweep_results.py) with "cases"
holding the latest capture's ROWs (each with "compare", "baseline_self_s", "change" when compared)
and "trace" the capture's record without its rows. Imports neither torch nor Textual.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

SCHEMA_VERSION = 1
PROFILE_KIND = "spintui.train_profile"
KEEP_ROWS = 60  # rows logged per capture: the tail of ~hundreds of ops is noise
VERDICTS = ("faster", "slower", "same", "new", "small")
MIN_SHARE = 0.01  # ops under this share of the update in both runs are not judged: microseconds are noise


def table_rows(ops: list[dict], update_s: float, keep: int = KEEP_ROWS) -> list[dict]:
    """ROWs from op totals ({"name", "source", "calls", "self_s", "total_s", "flops"}), largest self time first."""
    rows = []
    for op in ops:
        if op.get("calls", 0) <= 0 and not op.get("self_s"):
            continue
        self_s = float(op.get("self_s") or 0.0)
        rows.append({"name": str(op["name"]), "source": op.get("source", "cpu"), "calls": int(op.get("calls") or 0),
                     "self_s": self_s, "total_s": float(op.get("total_s") or self_s),
                     "share": self_s / update_s if update_s > 0 else None,
                     "flops": int(op["flops"]) if op.get("flops") else None})
    rows.sort(key=lambda r: -r["self_s"])
    return rows[:keep]


def phase_slices(span: dict, phases: list[tuple[str, float, int]], source: str) -> list[dict]:
    """Chrome trace slices for the C update's phases in one block, laid end to end from the start of
    the block's span `span` (a trace event with ts and dur in microseconds): their real durations,
    in phase order, since only totals per block are measured."""
    out, ts = [], float(span["ts"])
    for name, seconds, calls in phases:
        dur = seconds * 1e6
        out.append({"ph": "X", "cat": source, "name": f"{source}: {name}", "ts": ts, "dur": dur,
                    "pid": span.get("pid", 0), "tid": span.get("tid", 0),
                    "args": {"calls": calls, "note": "total of this phase in the block, phases laid end to end"}})
        ts += dur
    return out


def write_trace(chrome_json: Path, dest: Path, extra_events: list[dict]) -> Path:
    """torch's Chrome trace with `extra_events` added, gzipped to `dest` (Perfetto opens .json.gz)."""
    data = json.loads(Path(chrome_json).read_text())
    data.setdefault("traceEvents", []).extend(extra_events)
    tmp = dest.with_name(dest.name + ".tmp")
    with gzip.open(tmp, "wt") as f:
        json.dump(data, f)
    tmp.replace(dest)
    return dest


def block_spans(chrome_json_events: list[dict], label: str) -> dict[int, dict]:
    """{block: its span event} for the spans named '<label> N' the tracer recorded."""
    out = {}
    for ev in chrome_json_events:
        name = ev.get("name", "")
        if ev.get("ph") == "X" and name.startswith(label + " "):
            tail = name[len(label) + 1:]
            if tail.isdigit():
                out[int(tail)] = ev
    return out


def latest_trace(records: list[dict]) -> dict | None:
    traces = [r for r in records if r.get("kind") == "trace"]
    return traces[-1] if traces else None


def top_rows(trace: dict | None, n: int = 12) -> list[dict]:
    return list((trace or {}).get("rows") or [])[:n]


def update_split(trace: dict | None, n: int = 3) -> list[tuple[str, float]]:
    """The update's largest ops as (name, share of the update), then the rest as 'other'."""
    rows = top_rows(trace, n)
    out = [(r["name"], r["share"]) for r in rows if r.get("share") is not None]
    if out:
        out.append(("other", max(0.0, 1.0 - sum(s for _, s in out))))
    return out


# --------------------------------------------------------------------------------------------------
# Comparing with a baseline, and the profile JSON


def compare_rows(rows: list[dict], baseline_rows: list[dict], threshold: float) -> dict:
    """Each row with its verdict against the baseline's row of the same (source, name), by self time
    per call: slower beyond 1 + threshold, faster below 1 / (1 + threshold); "small" when the op
    takes under MIN_SHARE of the update in both runs."""
    base = {(r.get("source"), r["name"]): r for r in baseline_rows}
    out = []
    for row in rows:
        b = base.get((row.get("source"), row["name"]))
        if b is None or not b.get("self_s") or not b.get("calls") or not row.get("calls"):
            out.append({**row, "compare": "new", "baseline_self_s": None, "change": None})
            continue
        change = (row["self_s"] / row["calls"]) / (b["self_s"] / b["calls"])
        if (row.get("share") or 0) < MIN_SHARE and (b.get("share") or 0) < MIN_SHARE:
            out.append({**row, "compare": "small", "baseline_self_s": b["self_s"], "change": change})
            continue
        verdict = "slower" if change > 1 + threshold else "faster" if change < 1 / (1 + threshold) else "same"
        out.append({**row, "compare": verdict, "baseline_self_s": b["self_s"], "change": change})
    counts = {v: sum(1 for r in out if r["compare"] == v) for v in VERDICTS}
    return {"cases": out, "counts": counts, "regressions": counts["slower"], "threshold": threshold}


def run_trace(run_dir: Path | str) -> dict | None:
    """The latest `trace` record of a run."""
    from spintui.profiles.run_reader import RunReader

    return latest_trace(RunReader(run_dir).poll().records)


def profile_json(run_dir: Path | str, compare: dict | None = None) -> dict:
    from spintui.profiles.store import read_manifest

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    trace = run_trace(run_dir) or {}
    cases = compare["cases"] if compare else list(trace.get("rows") or [])
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": PROFILE_KIND,
        "run": {"name": run_dir.name, "path": str(run_dir.resolve()), "status": manifest.get("status"),
                "start_time": manifest.get("start_time"), "end_time": manifest.get("end_time")},
        "environment": {**(manifest.get("versions") or {}), "host": manifest.get("host"),
                        "device": trace.get("device")},
        "config": {"algo": manifest.get("algo"), **(manifest.get("config") or {})},
        "trace": {k: v for k, v in trace.items() if k not in ("rows", "kind")},
        "cases": cases,
        "compare": None if not compare else {k: v for k, v in compare.items() if k != "cases"},
    }
