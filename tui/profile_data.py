"""What the profile views show for a block-sparse sweep: table cells, verdict colours, the speedup chart.

Shared by the profile dashboard (tui/frames.py, tui/widgets.py) and the headless Rich table
(tui/profile_report.py); imports neither Textual nor torch. Records are the sweep's `kernel` records
(profiles/sweep_results.py).
"""

from __future__ import annotations

import math
from statistics import median

import numpy as np

from rich.text import Text

from spintui.tui.plot import colour
from spintui.tui.plot_data import PlotData, PlotLine, format_duration

# (record key or derived name, header, right-justified)
CASE_COLUMNS = (
    ("index", "#", True),
    ("mode", "op", False),
    ("size", "M×N×K", True),
    ("block", "blk", True),
    ("density", "density", True),
    ("dtype", "dtype", False),
    ("s_dense", "dense ms", True),
    ("s_ours", "ours ms", True),
    ("s_torch_bsr", "BSR ms", True),
    ("s_flex", "flex ms", True),
    ("tflops_effective", "TFLOP/s", True),
    ("speedup", "speedup", True),
    ("fraction_of_ideal", "of ideal", True),
    ("speedup_vs_torch_bsr", "vs BSR", True),
    ("sparse_bytes", "MiB", True),
    ("launch_bound", "launch", False),
    ("status", "check", False),
)
COMPARE_COLUMN = ("compare", "vs base", False)

# Rich style names; Textual's DataTable takes Rich Text cells.
STATUS_STYLES = {"ok": "green", "WRONG": "bold red", "error": "red"}
VERDICT_STYLES = {"faster": "green", "slower": "bold red", "same": "", "new": "dim", "WRONG": "bold red",
                  "error": "red", "small": "dim"}


def is_sweep_record(rec: dict) -> bool:
    """Records written by the blocksparse sweep (others get the generic key/value table)."""
    return "status" in rec and "s_ours" in rec


def columns(records: list[dict], config: dict | None = None) -> list[tuple[str, str, bool]]:
    """The table's columns; with the sweep's config, those that would stay empty are left out
    (dtype when there is one, torch BSR when no case can use it), so the table fits 120 columns."""
    cols = list(CASE_COLUMNS)
    if config:
        drop = set()
        if len(config.get("dtypes") or []) <= 1:
            drop.add("dtype")
        ops = config.get("ops") or ["matmul"]
        if "matmul" not in ops or "dsd" not in (config.get("modes") or []) or config.get("backward"):
            drop |= {"s_torch_bsr", "speedup_vs_torch_bsr"}
        if "attention" not in ops or config.get("device") != "cuda":
            drop.add("s_flex")
        cols = [c for c in cols if c[0] not in drop]
    if (config or {}).get("compare") or any(r.get("compare") is not None for r in records):
        cols.append(COMPARE_COLUMN)
    return cols


def _ms(seconds) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:.0f}"


def _ratio(value, suffix: str = "x") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def op_text(rec: dict) -> str:
    """A product's mode (sdd, dsd, dds), else the op (softmax, attention); records without an op are products."""
    return rec.get("mode") or rec.get("op") or "?"


def ops_text(ops: list[str] | None, modes: list[str] | None) -> str:
    """'sdd,dsd,dds' for the products alone, else e.g. 'matmul dsd,dds + softmax + attention'."""
    ops = ops or ["matmul"]
    if ops == ["matmul"]:
        return ",".join(modes or [])
    return " + ".join(f"matmul {','.join(modes or [])}" if op == "matmul" else op for op in ops)


def size_text(rec: dict) -> str:
    M, N, K = rec.get("M"), rec.get("N"), rec.get("K")
    return f"{M}³" if M == N == K else f"{M}×{N}×{K}"


def density_text(rec: dict) -> str:
    """The requested density, and the layout's own when a pattern could not match it."""
    want, got = rec.get("density"), rec.get("density_actual")
    text = f"{want:.0%}" if want is not None and want * 100 == round(want * 100) else f"{want:.3g}"
    if got is not None and want is not None and abs(got - want) > 0.005:
        text += f" ({got:.0%})"
    return text


def cell(rec: dict, key: str, index: int | None = None) -> str:
    """Plain text of one table cell; a case that is not ok shows '-' for every timing column."""
    if key == "index":
        return "" if index is None else str(index)
    if key == "mode":
        return op_text(rec)
    if key == "size":
        return size_text(rec)
    if key == "density":
        return density_text(rec)
    if key == "status":
        return rec.get("status") or "?"
    if key == "compare":
        verdict = rec.get("compare")
        change = rec.get("change")
        if verdict in ("faster", "slower", "same") and change is not None:
            return f"{verdict} {change - 1:+.0%}"
        return verdict or ""
    if rec.get("status") != "ok":
        return "-"
    value = rec.get(key)
    if key.startswith("s_"):
        return _ms(value)
    if key in ("speedup", "speedup_vs_torch_bsr"):
        return _ratio(value)
    if key == "fraction_of_ideal":
        return "-" if value is None else f"{value:.2f}"
    if key == "tflops_effective":
        return "-" if value is None else (f"{value:.3g}" if value >= 0.01 else f"{value:.2g}")
    if key == "sparse_bytes":
        return "-" if value is None else f"{value / 2**20:.2f}"
    if key == "launch_bound":
        return "yes" if value else ""
    return "" if value is None else str(value)


def cell_style(rec: dict, key: str) -> str:
    if key == "status":
        return STATUS_STYLES.get(rec.get("status"), "")
    if key == "compare":
        return VERDICT_STYLES.get(rec.get("compare"), "")
    if key == "launch_bound" and rec.get("launch_bound"):
        return "yellow"
    if rec.get("status") == "WRONG":
        return "red"
    return ""


def counts(records: list[dict]) -> dict[str, int]:
    out = {"ok": 0, "WRONG": 0, "error": 0}
    for r in records:
        out[r.get("status", "error")] = out.get(r.get("status", "error"), 0) + 1
    return out


def progress_text(done: int, total: int | None, eta: float | None, width: int = 20) -> str:
    """'━━━━━━╺─────── 12/36  33%  ETA 0:41'."""
    if not total:
        return f"{done} cases"
    share = min(1.0, done / total)
    full = int(share * width)
    bar = "━" * full + ("╺" if full < width else "") + "─" * max(0, width - full - 1)
    text = f"{bar} {done}/{total} {share:4.0%}"
    if eta is not None and done < total:
        text += f"  ETA {format_duration(eta)}"
    return text


def speedup_plot(records: list[dict], ideal_points: int = 48) -> PlotData:
    """Speedup over dense against the layout's density, one line per block size (median over the
    other grid dimensions at each density), and the ideal speedup 1/density; log y."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("speedup")]
    if not ok:
        reason = "waiting for the first correct case" if not records else "no correct case timed yet"
        return PlotData("Speedup vs density", [], "density", True, reason)
    lines: list[PlotLine] = []
    legend: list[tuple[str, int]] = []
    blocks = sorted({int(r["block"]) for r in ok})
    all_density = [float(r.get("density_actual") or r["density"]) for r in ok]
    lo, hi = min(all_density), max(all_density)
    if hi <= lo:
        lo, hi = lo * 0.8, min(1.0, hi * 1.25)
    xs = np.linspace(lo, hi, ideal_points)
    ideal_colour, dense_colour = 7, 6
    lines.append(PlotLine("ideal", xs, _symlog(1.0 / xs), ideal_colour, "dim"))
    lines.append(PlotLine("dense", xs[[0, -1]], _symlog([1.0, 1.0]), dense_colour, "dim"))
    legend += [("ideal 1/density", ideal_colour), ("dense 1x", dense_colour)]
    for i, block in enumerate(blocks):
        by_density: dict[float, list[float]] = {}
        for r in ok:
            if int(r["block"]) == block:
                d = round(float(r.get("density_actual") or r["density"]), 4)
                by_density.setdefault(d, []).append(float(r["speedup"]))
        x = np.array(sorted(by_density))
        y = np.array([median(by_density[d]) for d in sorted(by_density)])
        lines.append(PlotLine(f"block {block}", x, _symlog(y), i, "bold"))
        legend.append((f"block {block}", i))
    return PlotData("Speedup vs density", lines, "density", True, "", legend)


def _symlog(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * np.log10(1.0 + np.abs(y))


def best_case(records: list[dict]) -> dict | None:
    ok = [r for r in records if r.get("status") == "ok" and r.get("speedup") is not None]
    return max(ok, key=lambda r: r["speedup"]) if ok else None


def summary_line(records: list[dict]) -> str:
    """'36 cases: 35 ok, 1 WRONG; best 3.1x (dsd 512³ blk 64 10%); median 0.62 of ideal'."""
    c = counts(records)
    parts = [f"{len(records)} cases: {c['ok']} ok"]
    if c["WRONG"]:
        parts[-1] += f", {c['WRONG']} WRONG"
    if c["error"]:
        parts[-1] += f", {c['error']} error"
    best = best_case(records)
    if best is not None:
        parts.append(f"best {best['speedup']:.2f}x ({op_text(best)} {size_text(best)} blk {best['block']} "
                     f"{density_text(best)})")
        fractions = [r["fraction_of_ideal"] for r in records if r.get("status") == "ok"
                     and r.get("fraction_of_ideal") is not None and math.isfinite(r["fraction_of_ideal"])]
        if fractions:
            parts.append(f"median {median(fractions):.2f} of ideal")
    return "; ".join(parts)


def header_info(manifest: dict) -> tuple[str, list[tuple[str, object]]]:
    """(where it runs, the grid as key=value pairs) for the dashboard's header."""
    env = manifest.get("environment") or {}
    cfg = manifest.get("config") or {}
    device = env.get("device") or cfg.get("device") or ""
    where = f"{device} {env.get('device_name') or ''}".strip()
    if device == "cpu" and (env.get("threads") or cfg.get("threads")):
        where += f", {env.get('threads') or cfg.get('threads')} thread(s)"
    sizes = " ".join(f"{s[0]}" if len(set(s)) == 1 else ",".join(map(str, s)) for s in cfg.get("sizes") or [])
    hp: list[tuple[str, object]] = [
        ("sizes", sizes), ("blocks", ",".join(map(str, cfg.get("blocks") or []))),
        ("densities", ",".join(f"{d:g}" for d in cfg.get("densities") or [])),
        ("dtypes", ",".join(cfg.get("dtypes") or [])), ("ops", ops_text(cfg.get("ops"), cfg.get("modes"))),
        ("layout", cfg.get("layout", "random")),
    ]
    if cfg.get("backward"):
        hp.append(("backward", True))
    if cfg.get("compare"):
        hp.append(("compare", str(cfg["compare"]).rstrip("/").rsplit("/", 1)[-1]))
    return where, [(k, v) for k, v in hp if v not in ("", None)]


# --------------------------------------------------------------------------------------------------
# The kernel table of a traced training run (`spintui profile train`, profiles/trace_table.py)

TRACE_COLUMNS = (
    ("index", "#", True),
    ("name", "operation", False),
    ("source", "where", False),
    ("calls", "calls", True),
    ("self_s", "self ms", True),
    ("total_s", "total ms", True),
    ("share", "share", True),
    ("bar", "", False),
    ("flops", "FLOPs", True),
)
TRACE_SORTS = ("self_s", "total_s", "calls", "name")  # what the dashboard's sort key cycles through
BAR_WIDTH = 12


def is_trace_row(rec: dict) -> bool:
    return "self_s" in rec and "share" in rec


def trace_columns(rows: list[dict]) -> list[tuple[str, str, bool]]:
    cols = list(TRACE_COLUMNS)
    if any(r.get("compare") is not None for r in rows):
        cols.append(COMPARE_COLUMN)
    return cols


def sort_rows(rows: list[dict], key: str) -> list[dict]:
    if key == "name":
        return sorted(rows, key=lambda r: r["name"])
    return sorted(rows, key=lambda r: -(r.get(key) or 0))


def flops_text(flops) -> str:
    if not flops:
        return ""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.3g}{unit}"
    return str(flops)


def trace_cell(rec: dict, key: str, index: int | None = None) -> str:
    if key == "index":
        return "" if index is None else str(index)
    if key in ("self_s", "total_s"):
        return _ms(rec.get(key))
    if key == "share":
        return "-" if rec.get("share") is None else f"{rec['share']:.1%}"
    if key == "bar":
        return "█" * int(round(min(1.0, rec.get("share") or 0.0) * BAR_WIDTH))
    if key == "flops":
        return flops_text(rec.get("flops"))
    if key == "compare":
        return cell(rec, "compare")
    value = rec.get(key)
    return "" if value is None else str(value)


def trace_cell_style(rec: dict, key: str) -> str:
    if key == "compare":
        return VERDICT_STYLES.get(rec.get("compare"), "")
    if key == "bar":
        return "cyan" if rec.get("source") != "C update" else "magenta"
    return ""


TOP = 20


def trace_text(trace: dict | None, width: int, top: int = TOP) -> Text:
    """The latest trace's top operations: name, where, calls, self and total time, share with a bar, FLOPs."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not trace:
        text.append("no trace in this run yet: train with --trace N (update block N) or --trace N:M",
                    style="dim")
        return text
    blocks = trace.get("blocks") or []
    span = f"{blocks[0]}" if len(blocks) == 2 and blocks[0] == blocks[1] else "-".join(map(str, blocks))
    text.append(f"update block {span}", style="bold")
    text.append(f"  {_ms(trace.get('update_s'))} ms on {trace.get('device', '?')}, {trace.get('update') or ''}  "
                f"{trace.get('file', '')}\n", style="dim")
    name_w = max(20, width - 60)
    text.append(f"{'operation':<{name_w}} {'where':<8} {'calls':>6} {'self ms':>9} {'total ms':>9} "
                f"{'share':>6} {'':<8} {'FLOPs':>7}\n", style="bold")
    for i, row in enumerate((trace.get("rows") or [])[:top]):
        share = row.get("share")
        bar = "█" * int(round(min(1.0, share or 0.0) * 8))
        text.append(f"{row['name'][:name_w]:<{name_w}} {row.get('source', ''):<8} {row.get('calls', 0):>6} "
                    f"{_ms(row.get('self_s')):>9} {_ms(row.get('total_s')):>9} "
                    f"{'-' if share is None else f'{share:.1%}':>6} ")
        text.append(f"{bar:<8}", style=colour(i % 8))
        text.append(f" {flops_text(row.get('flops')):>7}\n")
    return text


def split_lines(split: list[tuple[str, float]], width: int) -> Text:
    """The update phase's largest ops under its Timing row: '  ╰ aten::mm 31%'."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for name, share in split:
        if name == "other":
            continue
        text.append(f"\n  ╰ {name[:max(8, width - 12)]} {share:.0%}", style="dim")
    return text
