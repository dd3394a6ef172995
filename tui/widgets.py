"""What the dashboards draw with: the plot widget, the kernel table, and the text of the other panels.

Widgets and renderers only draw what they are given (a `PlotData`, kernel records, a telemetry
sample, a frame); reading runs and building plots happens off the UI thread (tui/frames.py).
"""

from __future__ import annotations

import time

from collections import deque

from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable, Static

from spintui.profiles import gpu as telemetry
from spintui.tui import profile_data
from spintui.tui.frames import Frame
from spintui.tui.gpu_panel import history_text
from spintui.tui.profile_data import split_lines
from spintui.tui.plot import colour, render_plot
from spintui.tui.plot_data import PlotData, ViewSettings, format_duration, format_number

STATUS_COLOURS = {"running": "green", "finished": "blue", "stopped": "yellow", "failed": "red",
                  "crashed": "red", "unknown": "white"}
SPARKS = "▁▂▃▄▅▆▇█"
HISTORY = 120  # telemetry samples kept for sparklines

# --------------------------------------------------------------------------------------------------
# Widgets


class PlotView(Widget):
    """A braille line plot; repaints only when given a different PlotData or resized."""

    def __init__(self, title: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.plot_title = title
        self._data: PlotData | None = None
        self._rows: list | None = None
        self._rows_size = None
        if title:
            self.border_title = title

    @property
    def data(self) -> PlotData | None:
        return self._data

    def show(self, data: PlotData | None, subtitle: str | None = None) -> None:
        if subtitle is not None and subtitle != self.border_subtitle:
            self.border_subtitle = subtitle
        if data is self._data:
            return
        self._data = data
        self._rows = None
        self.refresh()

    def on_resize(self) -> None:
        self._rows = None

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self._rows is None or self._rows_size != (width, height):
            self._rows = render_plot(self._data, width, height)
            self._rows_size = (width, height)
        if y >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        return Strip(self._rows[y], width).apply_style(self.rich_style)


class KernelTable(DataTable):
    """A profile run's kernel records, a row per case as it arrives (rows are only ever appended)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(zebra_stripes=False, cursor_type="row", **kwargs)
        self.border_title = "Kernels"
        self._rows_shown = 0
        self._column_keys: list[str] = []

    def show(self, kernels: list[dict], header: dict, sort: str = "self_s") -> None:
        if kernels and profile_data.is_sweep_record(kernels[0]):
            self._show_sweep(kernels, header)
            return
        if kernels and profile_data.is_trace_row(kernels[0]):
            self._show_trace(kernels, header, sort)
            return
        new = kernels[self._rows_shown:]
        if not new:
            if not kernels:
                self.border_subtitle = "waiting for the first kernel timing"
            return
        skip = {"kind", "time"}
        for rec in new:
            for key in rec:
                if key not in skip and key not in self._column_keys:
                    self._column_keys.append(key)
                    self.add_column(key, key=key)
        for rec in new:
            cells = []
            for key in self._column_keys:
                v = rec.get(key)
                if isinstance(v, float):
                    v = format_number(v) if abs(v) >= 1 else f"{v:.3g}"
                cells.append("" if v is None else str(v))
            self.add_row(*cells)
        self._rows_shown = len(kernels)
        self.border_subtitle = f"{len(kernels)} cases"

    def _show_sweep(self, kernels: list[dict], header: dict) -> None:
        """The blocksparse sweep's table: fixed columns, WRONG in red, progress with ETA below."""
        cols = profile_data.columns(kernels, header.get("config"))
        if [key for key, _, _ in cols] != self._column_keys:
            self.clear(columns=True)  # first rows, or a compare column appeared
            self._column_keys = [key for key, _, _ in cols]
            self._rows_shown = 0
            for key, label, _ in cols:
                self.add_column(label, key=key)
        at_end = self.cursor_row >= self.row_count - 1
        justify = {key: "right" if right else "left" for key, _, right in cols}
        for i, rec in enumerate(kernels[self._rows_shown:], start=self._rows_shown + 1):
            self.add_row(*(Text(profile_data.cell(rec, key, i), style=profile_data.cell_style(rec, key),
                                justify=justify[key]) for key, _, _ in cols), key=str(i))
        if len(kernels) > self._rows_shown and at_end:
            self.move_cursor(row=len(kernels) - 1)
        self._rows_shown = len(kernels)
        status = header.get("status", "running")
        eta = header.get("eta") if status == "running" else None
        subtitle = profile_data.progress_text(header.get("step") or len(kernels), header.get("total"), eta)
        if status != "running":
            subtitle += f"  {status}"
        counts = profile_data.counts(kernels)
        bad = "  ".join(f"{counts[k]} {k}" for k in ("WRONG", "error") if counts[k])
        if bad:
            subtitle += f"  [red]{bad}[/]"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle


    def _show_trace(self, rows: list[dict], header: dict, sort: str) -> None:
        """A traced training run's operations (profile train): rebuilt whenever the rows or the sort change."""
        shown = (id(rows), len(rows), sort, tuple(r.get("compare") for r in rows))
        if shown == getattr(self, "_trace_shown", None):
            return
        self._trace_shown = shown
        cols = profile_data.trace_columns(rows)
        self.clear(columns=True)
        self._column_keys = [key for key, _, _ in cols]
        for key, label, _ in cols:
            self.add_column(label, key=key)
        justify = {key: "right" if right else "left" for key, _, right in cols}
        for i, rec in enumerate(profile_data.sort_rows(rows, sort), start=1):
            self.add_row(*(Text(profile_data.trace_cell(rec, key, i), style=profile_data.trace_cell_style(rec, key),
                                justify=justify[key]) for key, _, _ in cols), key=str(i))
        self._rows_shown = len(rows)
        label = {"self_s": "self time", "total_s": "total time", "calls": "calls", "name": "name"}[sort]
        self.border_subtitle = f"{len(rows)} operations, by {label} (o sorts)  {header.get('status', '')}"


class TelemetryPanel(Static):
    """The GPU panel (NVML), or the System panel (psutil) where there is no GPU to sample:
    the newest sample, with sparklines of the recent ones."""

    def __init__(self) -> None:
        super().__init__(id="gpu", classes="panel")
        self.border_title = "GPU"
        self._history: dict = {}

    def show_sample(self, sample, reason: str, title: str | None = None) -> None:
        """A GpuSample, or a SystemSample with the `reason` there is no GPU panel."""
        width = self.size.width or 40
        if isinstance(sample, telemetry.GpuSample):
            for g in sample.gpus:
                h = self._history.setdefault(g.index, {"util": deque(maxlen=HISTORY), "mem": deque(maxlen=HISTORY)})
                h["util"].append(g.utilization)
                h["mem"].append(g.memory_used)
            title = title or "GPU"
            text = gpu_text(sample, self._history, width)
        else:
            h = self._history.setdefault("system", {k: deque(maxlen=HISTORY) for k in ("cpu", "ram", "trainer_cpu")})
            h["cpu"].append(sample.cpu_percent)
            h["ram"].append(sample.ram_used)
            h["trainer_cpu"].append(sample.trainer_cpu_percent)
            title = "System"
            text = system_text(sample, h, reason, width)
        if self.border_title != title:
            self.border_title = title
        self.update(text)

    def show_history(self, view: dict, host: str | None) -> None:
        """The run's own GPU history (the producer logged it): the same live, finished or copied."""
        title = f"GPU (logged on {host})" if host else "GPU (this run's history)"
        if self.border_title != title:
            self.border_title = title
        self.update(history_text(view, self.size.width or 40))

    def show_off(self) -> None:
        self.border_title = "System"
        self.update(Text("telemetry off", style="dim"))


# --------------------------------------------------------------------------------------------------
# Text of the panels


def sparkline(values, width: int, lo: float | None = None, hi: float | None = None) -> str:
    vals = [v for v in list(values)[-width:] if v is not None]
    if not vals or width <= 0:
        return ""
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(7, max(0, int((v - lo) / span * 7.999)))] for v in vals)


def gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f}"


def na(value, fmt: str = "{}") -> str:
    return "n/a" if value is None else fmt.format(value)


def gpu_text(sample: telemetry.GpuSample, history: dict, width: int) -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    spark_w = max(4, min(30, width - 26))
    for g in sample.gpus:
        h = history.get(g.index, {})
        out.append(f"GPU{g.index} ", style="bold")
        out.append(f"{g.name}\n")
        out.append(f" util {na(g.utilization, '{:>3d}%')} ")
        out.append(sparkline(h.get("util", ()), spark_w, 0, 100), style=colour(0))
        out.append("\n")
        mem = f"{gib(g.memory_used)}/{gib(g.memory_total)} GiB" if g.memory_total else "n/a"
        out.append(f" mem  {mem} ")
        out.append(sparkline(h.get("mem", ()), max(4, spark_w - len(mem) + 4), 0, g.memory_total or None),
                   style=colour(1))
        out.append("\n")
        power = "n/a" if g.power_w is None else f"{g.power_w:.0f}" + (
            f"/{g.power_limit_w:.0f}" if g.power_limit_w else "")
        out.append(f" {power} W  {na(g.temperature_c, '{}°C')}  SM {na(g.sm_clock_mhz, '{} MHz')}\n")
        for p in g.processes[:3]:
            mark = "▶ " if p.is_trainer else "  "
            who = "trainer" if p.is_trainer else (p.name or "")
            out.append(f" {mark}{p.pid:>7d} {gib(p.used_bytes):>5} GiB {who}\n",
                       style="bold" if p.is_trainer else "")
        if len(g.processes) > 3:
            out.append(f"   +{len(g.processes) - 3} more processes\n", style="dim")
    if sample.trainer_match and sample.trainer_match != "matched":
        out.append(sample.trainer_match, style="dim")
    return out


def system_text(sample: telemetry.SystemSample, history: dict, reason: str, width: int) -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    spark_w = max(4, min(40, width - 24))
    out.append(reason + "\n", style="dim")
    out.append(f"CPU  {sample.cpu_percent:5.1f}% of {sample.cpu_count} ")
    out.append(sparkline(history.get("cpu", ()), spark_w, 0, 100), style=colour(0))
    out.append("\n")
    ram = f"RAM  {gib(sample.ram_used)}/{gib(sample.ram_total)} GiB "
    out.append(ram)
    out.append(sparkline(history.get("ram", ()), spark_w, 0, sample.ram_total), style=colour(1))
    out.append("\n")
    if sample.trainer_cpu_percent is not None:
        out.append(f"trainer pid {sample.trainer_pid}: CPU {sample.trainer_cpu_percent:.0f}%  "
                   f"RSS {sample.trainer_rss / 2**20:.0f} MiB ")
        out.append(sparkline(history.get("trainer_cpu", ()), max(4, spark_w - 16), 0, None), style=colour(2))
        out.append("\n")
    elif sample.trainer_note:
        out.append(sample.trainer_note + "\n", style="dim")
    return out


def phase_text(phases: list[tuple[str, float]], width: int, split: list[tuple[str, float]] | None = None) -> Text:
    """Time per phase, a bar each for its share of the total; `split`: the update phase's largest
    operations (from the latest trace) under its row."""
    if not phases:
        return Text("time per phase: not logged by this run", style="dim")
    total = sum(v for _, v in phases if v and v > 0) or 1.0
    text = Text(no_wrap=True, overflow="ellipsis")
    bar_w = max(2, width - 28)
    for i, (name, value) in enumerate(phases[:6]):
        share = max(0.0, value / total)
        shown = f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"
        text.append(f"{name[:10]:<10} {shown:>10} {share:4.0%} ")
        text.append("█" * int(round(share * bar_w)), style=colour(i))
        if split and name.lower() in ("update", "policyupdate"):
            text.append(split_lines(split, width))
        if i < min(6, len(phases)) - 1:
            text.append("\n")
    return text


def legend_markup(data: PlotData | None, settings: ViewSettings | None = None) -> str:
    """A plot's legend as markup; with `settings`, followed by how its lines are smoothed and scaled."""
    if data is None or not data.legend:
        return ""
    text = " ".join(f"[{colour(c)}]━[/] {label}" for label, c in data.legend)
    if settings is None:
        return text
    smoothing = f"ema {settings.smoothing:g}" if settings.smoothing else "raw"
    log = " · log" if settings.log_y else ""
    return text + f" · {smoothing}{log}"


def header_text(frame: Frame, paused: bool, step_name: str, now: float | None = None) -> Text:
    """Two lines: one run's status, elapsed, progress and hyperparameters, or a line per run overlaid."""
    now = time.time() if now is None else now
    text = Text(no_wrap=True, overflow="ellipsis")
    rows = frame.header
    if len(rows) == 1:
        h = rows[0]
        status = h["status"]
        if paused:
            status += " (paused)"
        text.append(f"{h['algo']} ", style="bold")
        if h["env"]:
            text.append(f"{h['env']}  ")
        text.append(status, style=STATUS_COLOURS.get(h["status"], "white"))
        elapsed = h["elapsed"] + (now - h["start"] - h["elapsed"] if h["status"] == "running" and h["start"] else 0)
        text.append(f"  elapsed {format_duration(elapsed)}")
        step = f"{h['step']:,}"
        if h["total"]:
            step += f"/{h['total']:,} ({min(1.0, h['step'] / h['total']):.0%})"
        text.append(f"  {step_name} {step}")
        if h["eta"] is not None:
            text.append(f"  ETA {format_duration(h['eta'])}")
        if h["last_return"] is not None:
            text.append(f"  return {h['last_return']:.4g}")
        text.append("\n")
        hp = "  ".join(f"{k}={v}" if k else str(v) for k, v in h["hp"])
        text.append(f"{h['name']}  {hp}", style="dim")
    else:
        text.append(f"{len(rows)} runs  ", style="bold")
        for i, h in enumerate(rows):
            text.append("━ ", style=colour(i))
            text.append(f"{h['name']} ")
            text.append(h["status"], style=STATUS_COLOURS.get(h["status"], "white"))
            text.append(f" {h['step']:,}  ")
        if paused:
            text.append("(paused)")
        what_runs(text, rows)
    if frame.error:
        text.append(f"  {frame.error}", style="red")
    return text


def what_runs(text: Text, rows: list[dict], error: str = "") -> Text:
    """A new line in `text` naming the algorithms and environments of the runs in header `rows`,
    then `error` in red."""
    text.append("\n")
    text.append(", ".join(sorted({f"{h['algo']} {h['env'] or ''}".strip() for h in rows})), style="dim")
    if error:
        text.append(f"  {error}", style="red")
    return text
