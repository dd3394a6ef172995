"""The GPU panel's text for a run's own GPU history (profiles/gpu_history.py), without Textual.

The same whether the run is live, finished, copied or watched from another host: the newest
values of each GPU with a sparkline of the whole history (bucket means) for utilisation, memory,
the trainer's own memory, power, temperature and SM clock, then the trainer's process.
"""

from __future__ import annotations

from rich.text import Text

from spintui.profiles.gpu_history import sample_from_record
from spintui.tui.plot import colour
from spintui.tui.plot_data import format_duration

SPARKS = "▁▂▃▄▅▆▇█"


def spark(values: list, width: int, lo: float | None = None, hi: float | None = None) -> str:
    """All of `values` as a sparkline at most `width` wide (bucket means; None: a gap)."""
    vals = list(values)
    if width <= 0:
        vals = []
    elif len(vals) > width:
        edges = [round(i * len(vals) / width) for i in range(width + 1)]
        vals = [_mean(vals[a:b]) for a, b in zip(edges, edges[1:])]
    nums = [v for v in vals if v is not None]
    if not nums:
        return ""
    lo = min(nums) if lo is None else lo
    hi = max(nums) if hi is None else hi
    span = (hi - lo) or 1.0
    return "".join(" " if v is None else SPARKS[min(7, max(0, int((v - lo) / span * 7.999)))] for v in vals)


def _mean(chunk: list):
    nums = [v for v in chunk if v is not None]
    return sum(nums) / len(nums) if nums else None


def _gib(n) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f}"


def history_text(view: dict, width: int) -> Text:
    """The panel for `GpuHistory.view()`; a line saying so when the run has none."""
    out = Text(no_wrap=True, overflow="ellipsis")
    if not view:
        out.append("no GPU samples in this run", style="dim")
        return out
    sample = sample_from_record(view["last"])
    spark_w = max(4, width - 24)
    own = view["own_memory"]
    for g in sample.gpus:
        series = view["gpus"].get(g.index, {})
        out.append(f"GPU{g.index} ", style="bold")
        out.append(f"{g.name}\n")
        rows = [
            ("util", "n/a" if g.utilization is None else f"{g.utilization}%", "utilization", 0, 100),
            ("mem", f"{_gib(g.memory_used)}/{_gib(g.memory_total)} GiB", "memory_used", 0, g.memory_total),
            ("own", _trainer_memory(series, own), "trainer_memory", 0, g.memory_total),
            ("power", "n/a" if g.power_w is None else f"{g.power_w:.0f}" + (
                f"/{g.power_limit_w:.0f} W" if g.power_limit_w else " W"), "power_w", 0, g.power_limit_w),
            ("temp", "n/a" if g.temperature_c is None else f"{g.temperature_c}°C", "temperature_c", None, None),
            ("SM", "n/a" if g.sm_clock_mhz is None else f"{g.sm_clock_mhz} MHz", "sm_clock_mhz", None, None),
        ]
        for i, (label, value, key, lo, hi) in enumerate(rows):
            values = series.get(key) or []
            if key == "trainer_memory" and not any(v is not None for v in values):
                values = own  # NVML could not match the process: the framework's own count
            out.append(f" {label:<5} {value:>15} ")
            out.append(spark(values, spark_w, lo, hi or None), style=colour(i))
            out.append("\n")
        for p in g.processes[:1]:
            out.append(f" ▶ {p.pid:>7d} {_gib(p.used_bytes):>5} GiB trainer\n", style="bold")
    note = f"{view['samples']:,} samples over {format_duration(view['span_s'])}"
    if sample.trainer_match and sample.trainer_match != "matched":
        note += f"; {sample.trainer_match}"
    out.append(note, style="dim")
    return out


def _trainer_memory(series: dict, own: list) -> str:
    """The trainer's memory as NVML saw it, else as its framework counts it, else n/a."""
    for values, what in ((series.get("trainer_memory") or [], ""), (own, " (torch)")):
        last = next((v for v in reversed(values) if v is not None), None)
        if last is not None:
            return f"{_gib(last)} GiB{what}"
    return "n/a"
