"""The live dashboard: `spintui watch RUN ...` and `spintui train ...` in a terminal.

Threads do the work, widgets only draw. A data worker tails the runs (tui/data.py), smooths and
decimates the series for the current view and posts a `FrameReady`; a telemetry worker samples
NVML (or psutil) once a second and posts a `TelemetryReady`. Both messages replace an older queued
one of their kind, so a slow terminal never builds a backlog. Plots repaint only when their data
changed, at most once per refresh interval (1 s by default: the run store flushes once a second).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Container, Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static

from spintui.profiles import gpu as telemetry
from spintui.profiles.store import RunError, read_manifest, request_stop
from spintui.tui.data import Preload, RunTail
from spintui.tui.plot_data import (
    SMOOTHING_STEPS,
    PlotData,
    ViewSettings,
    format_duration,
    format_number,
    loss_plot,
    rate_plot,
    return_plot,
)
from spintui.tui import profile_data
from spintui.tui.plot import colour, render_plot

REFRESH_S = 1.0
# Once its first frame is on screen, a viewer drops to a lower CPU priority: when cores are scarce,
# training gets them first and the dashboard takes what is left (it needs ~4% of a core).
VIEWER_NICE = 10
TELEMETRY_S = 1.0
HISTORY = 120  # telemetry samples kept for sparklines
STATUS_COLOURS = {"running": "green", "finished": "blue", "stopped": "yellow", "failed": "red",
                  "crashed": "red", "unknown": "white"}
SPARKS = "▁▂▃▄▅▆▇█"


# --------------------------------------------------------------------------------------------------
# Messages from the workers


@dataclass
class Frame:
    """Everything the panels show, built off the UI thread; plot objects keep their identity while
    their data is unchanged, so widgets can skip repainting by comparing identity."""

    returns: PlotData | None
    loss: PlotData | None
    loss_names: list[str]
    loss_name: str | None
    rate: PlotData | None
    header: list[dict]
    phases: list[tuple[str, float]]
    steps_per_sec: float | None
    kernels: list[dict]
    trainer: tuple[int | None, str | None]
    error: str = ""
    run_gpu: dict | None = None  # the newest `gpu` record a trainer logged (GpuLogger)
    speedup: PlotData | None = None  # profile runs: speedup against density per block size


class FrameReady(Message):
    def __init__(self, frame: Frame) -> None:
        super().__init__()
        self.frame = frame

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FrameReady)


class TelemetryReady(Message):
    def __init__(self, sample, reason: str) -> None:
        super().__init__()
        self.sample = sample  # GpuSample or SystemSample
        self.reason = reason  # why the System panel is shown, "" for GPUs

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TelemetryReady)


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


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "close help")]

    def __init__(self, bindings: list[Binding], profile: bool = False) -> None:
        super().__init__()
        self.key_list = bindings
        self.profile = profile

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("spintui dashboard keys\n\n", style="bold")
        for b in self.key_list:
            keys = ", ".join(_key_name(k) for k in b.key.split(","))
            text.append(f"  {keys:<16}", style="bold")
            text.append(f"{b.description}\n")
        if self.profile:
            text.append("\nPanels: Kernels (a row per case as it finishes; WRONG: failed the dense check,\n"
                        "never timed), Speedup vs density per block size with the ideal 1/density,\n"
                        "GPU or System. Esc, q or ? close.", style="dim")
        else:
            text.append("\nPanels: Return (raw, smoothed, test), Loss (j/k picks the series),\n"
                        "GPU or System, Timing (steps/s, time per phase). Esc, q or ? close.", style="dim")
        yield Static(text, id="help-body")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


def _key_name(key: str) -> str:
    return {"question_mark": "?", "plus": "+", "minus": "-", "ctrl+c": "ctrl+c", "down": "↓", "up": "↑",
            "right_square_bracket": "]", "left_square_bracket": "["}.get(key, key)


class QuitDialog(ModalScreen[str]):
    """Closing the dashboard never stops training silently: stop, detach or cancel."""

    BINDINGS = [
        Binding("s", "choose('stop')", "stop training"),
        Binding("d", "choose('detach')", "detach"),
        Binding("escape,c", "choose('cancel')", "cancel"),
    ]

    def __init__(self, run_name: str, profile: bool = False) -> None:
        super().__init__()
        self.run_name = run_name
        self.profile = profile

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-body"):
            if self.profile:
                text = Text.assemble(("The profile is still running", "bold"), f" ({self.run_name}).\n\n",
                                     "Stop: end it after the current case (status stopped).\n",
                                     "Detach: close the dashboard, the sweep goes on.\n")
            else:
                text = Text.assemble(("Training is still running", "bold"), f" ({self.run_name}).\n\n",
                                     "Stop: end the run cleanly (final checkpoint, status stopped).\n",
                                     "Detach: close the dashboard, training goes on.\n")
            yield Static(text)
            with Horizontal(id="quit-buttons"):
                yield Button("Stop (s)", id="stop", variant="error")
                yield Button("Detach (d)", id="detach", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


# --------------------------------------------------------------------------------------------------
# The app


def while_mounted(handler):
    """A worker message can arrive while the app is shutting down and its widgets are gone: drop it."""

    def guarded(self, *args):
        try:
            return handler(self, *args)
        except NoMatches:
            if self.is_running and not self._stop_workers.is_set() and not getattr(self, "_exit", False):
                raise
            return None

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


class Dashboard(App):
    CSS_PATH = "dashboard.tcss"
    TITLE = "spintui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "help: list every key"),
        Binding("s,plus", "smoothing(1)", "smoothing up (TensorBoard EMA weight)"),
        Binding("S,minus", "smoothing(-1)", "smoothing down (0 shows raw only)"),
        Binding("x", "toggle_axis", "x axis: env steps / wall time"),
        Binding("l", "toggle_log", "log scale (symlog: losses may cross 0)"),
        Binding("p", "toggle_pause", "pause / resume updates"),
        Binding("j,down,right_square_bracket", "loss(1)", "next loss series"),
        Binding("k,up,left_square_bracket", "loss(-1)", "previous loss series"),
        Binding("q,ctrl+c", "quit_dashboard", "quit (stop or detach a trainer it started)",
                priority=True),
    ]

    def __init__(self, run_dirs: list[Path | str], owned=None, refresh_s: float = REFRESH_S,
                 telemetry_s: float = TELEMETRY_S, preload: Preload | None = None, telemetry: bool = True) -> None:
        super().__init__()
        self.preload = preload
        self.telemetry = telemetry  # False: no sampling (fixed screens for snapshot tests)
        self.run_dirs = [Path(p) for p in run_dirs]
        if not self.run_dirs:
            raise RunError("no runs to watch")
        self.owned = owned
        self.refresh_s = refresh_s
        self.telemetry_s = telemetry_s
        manifests = [read_manifest(p) for p in self.run_dirs]
        self.is_profile = any(m.get("kind") == "profile" for m in manifests)
        first = manifests[0]
        self.trainer: tuple[int | None, str | None] = (first.get("pid"), first.get("host"))
        self.settings = ViewSettings()
        self._wake = threading.Event()
        self._stop_workers = threading.Event()
        self.frame: Frame | None = None
        self.outcome = "closed"  # what run_dashboard reports: closed, detached, stopped
        self._stopping = False
        self._kernel_rows = 0
        self._kernel_columns: list[str] = []
        self._history: dict = {}
        self._last_header = None
        self.yield_cpu = False  # run_dashboard sets it: lower priority after the first frame

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Container(id="panels", classes="profile" if self.is_profile else ""):
            if self.is_profile:
                table = DataTable(id="kernels", classes="panel", zebra_stripes=False, cursor_type="row")
                table.border_title = "Kernels"
                yield table
                yield PlotView("Speedup vs density (log y)", id="speedup", classes="panel")
            else:
                yield PlotView("Return", id="returns", classes="panel")
                yield PlotView("Loss", id="loss", classes="panel")
            gpu_panel = Static(id="gpu", classes="panel")
            gpu_panel.border_title = "GPU"
            yield gpu_panel
            if not self.is_profile:
                with Vertical(id="timing", classes="panel"):
                    yield PlotView(id="timing-plot")
                    yield Static(id="phases")
        yield Static(id="keys")

    def on_mount(self) -> None:
        if not self.is_profile:
            self.query_one("#timing").border_title = "Timing"
        self._update_keys()
        self._settings_changed(plot_width=max(40, self.size.width))
        self._data_worker()
        if self.telemetry:
            self._telemetry_worker()
        else:
            gpu_panel = self.query_one("#gpu", Static)
            gpu_panel.border_title = "System"
            gpu_panel.update(Text("telemetry off", style="dim"))
        self.set_interval(1.0, self._tick_header)
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self._terminal_gone)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
            pass

    def on_resize(self, event) -> None:
        self._settings_changed(plot_width=max(40, event.size.width))

    def on_unmount(self) -> None:
        self._stop_workers.set()
        self._wake.set()

    # -- workers -----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="data")
    def _data_worker(self) -> None:
        tails = self.preload.tails() if self.preload is not None else None
        if tails is None:
            tails = [RunTail(p) for p in self.run_dirs]
        built_settings = None
        versions = None
        returns = loss = rate = speedup = None
        loss_names: list[str] = []
        loss_name = None
        posted = None  # what the last frame showed: skip posting when nothing changed
        while not self._stop_workers.is_set():
            settings = self.settings
            error = ""
            if not settings.paused:
                for tail in tails:
                    try:
                        tail.poll()
                    except Exception as exc:  # a vanished or unreadable run shows as a line, not a crash
                        error = f"{tail.name}: {type(exc).__name__}: {exc}"
            now_versions = tuple(t.data_version for t in tails)
            if settings is not built_settings or now_versions != versions:
                try:
                    if self.is_profile:
                        speedup = profile_data.speedup_plot(tails[0].kernels)
                    else:
                        returns = return_plot(tails, settings)
                        loss, loss_names, loss_name = loss_plot(tails, settings)
                        rate = rate_plot(tails, settings)
                except Exception as exc:  # odd data must not take the viewer down
                    error = f"cannot plot: {type(exc).__name__}: {exc}"
                built_settings, versions = settings, now_versions
            now = time.time()
            state = (tuple(t.version for t in tails), tuple(t.status(now) for t in tails), settings, error)
            if state == posted:
                self._wake.wait(self.refresh_s)
                self._wake.clear()
                continue
            posted = state
            header = [{
                "name": t.name, "algo": t.manifest.get("algo") or t.manifest.get("benchmark") or t.kind,
                "env": t.manifest.get("env"), "status": t.status(now), "start": t.start_time,
                "elapsed": t.elapsed(now), "step": t.current_step(), "total": t.total_steps(),
                "eta": t.eta(now), "rate": t.current_steps_per_sec(), "hp": t.hyperparameters(),
                "records": t.records, "last_return": t.episodes.last() if len(t.episodes) else None,
            } for t in tails]
            if self.is_profile:
                for h, t in zip(header, tails):
                    h["env"], h["hp"] = profile_data.header_info(t.manifest)
                    h["config"] = t.manifest.get("config") or {}
            first = tails[0]
            live = first.status(now) == "running"
            frame = Frame(returns, loss, loss_names, loss_name, rate, header, first.phase_times(),
                          first.current_steps_per_sec(), list(first.kernels),
                          (first.manifest.get("pid"), first.manifest.get("host")) if live else (None, None),
                          error, first.last_gpu, speedup)
            self.post_message(FrameReady(frame))
            self._wake.wait(self.refresh_s)
            self._wake.clear()

    @work(thread=True, exclusive=True, group="telemetry")
    def _telemetry_worker(self) -> None:
        sampler, reason = telemetry.open_gpu_sampler()
        system = None
        try:
            while not self._stop_workers.is_set():
                pid, host = self.trainer
                sample = None
                if sampler is not None:
                    try:
                        sample = sampler.sample(pid, host)
                    except telemetry.TelemetryError as exc:
                        sampler.close()
                        sampler, reason = None, str(exc)
                if sample is None:
                    if system is None:
                        system = telemetry.SystemSampler()
                    sample = system.sample(pid, host)
                self.post_message(TelemetryReady(sample, "" if sampler is not None else reason))
                self._stop_workers.wait(self.telemetry_s)
        finally:
            if sampler is not None:
                sampler.close()

    # -- rendering messages ------------------------------------------------------------------------
    def _panels_gone(self) -> bool:
        """A worker's message can arrive after the panels were removed while the app exits."""
        if self._stop_workers.is_set():
            return True
        try:
            return not self.screen.query("#gpu")
        except ScreenStackError:  # no screen left at all
            return True

    @while_mounted
    def on_frame_ready(self, message: FrameReady) -> None:
        if self._panels_gone():
            return
        frame = message.frame
        if self.frame is None and self.yield_cpu:
            self.call_after_refresh(lower_priority)
        self.frame = frame
        self.trainer = frame.trainer
        if not self.is_profile:
            self.query_one("#returns", PlotView).show(frame.returns, self._legend(frame.returns))
            loss_view = self.query_one("#loss", PlotView)
            if frame.loss_name:
                idx = frame.loss_names.index(frame.loss_name) + 1
                title = f"Loss: {frame.loss_name} ({idx}/{len(frame.loss_names)}, j/k)"
                if loss_view.border_title != title:
                    loss_view.border_title = title
            loss_view.show(frame.loss, self._legend(frame.loss))
        else:
            self._update_kernels(frame.kernels, frame.header[0] if frame.header else {})
            speedup = frame.speedup
            legend = "" if speedup is None else " ".join(f"[{colour(c)}]━[/] {label}" for label, c in speedup.legend)
            self.query_one("#speedup", PlotView).show(speedup, legend)
            self._tick_header()
            return
        rate = "" if frame.steps_per_sec is None else f"  {format_number(frame.steps_per_sec)} steps/s"
        timing = self.query_one("#timing")
        if timing.border_title != f"Timing{rate}":
            timing.border_title = f"Timing{rate}"
        self.query_one("#timing-plot", PlotView).show(frame.rate)
        if frame.run_gpu and self.remote_trainer() and frame.run_gpu is not getattr(self, "_shown_run_gpu", None):
            self._shown_run_gpu = frame.run_gpu
            self._show_run_gpu(frame.run_gpu)
        self._update_phases(frame.phases)
        self._tick_header()

    def _legend(self, data: PlotData | None) -> str:
        if data is None or not data.legend:
            return ""
        parts = []
        for label, c in data.legend:
            parts.append(f"[{colour(c)}]━[/] {label}")
        smoothing = f"ema {self.settings.smoothing:g}" if self.settings.smoothing else "raw"
        log = " · log" if self.settings.log_y else ""
        return " ".join(parts) + f" · {smoothing}{log}"

    def _update_phases(self, phases: list[tuple[str, float]]) -> None:
        widget = self.query_one("#phases", Static)
        if not phases:
            text = Text("time per phase: not logged by this run", style="dim")
        else:
            total = sum(v for _, v in phases if v and v > 0) or 1.0
            text = Text(no_wrap=True, overflow="ellipsis")
            bar_w = max(2, (widget.size.width or 30) - 28)
            for i, (name, value) in enumerate(phases[:6]):
                share = max(0.0, value / total)
                shown = f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"
                text.append(f"{name[:10]:<10} {shown:>10} {share:4.0%} ")
                text.append("█" * int(round(share * bar_w)), style=colour(i))
                if i < min(6, len(phases)) - 1:
                    text.append("\n")
        if str(text) != getattr(widget, "_last_text", None):
            widget._last_text = str(text)
            widget.update(text)

    def _update_kernels(self, kernels: list[dict], header: dict) -> None:
        table = self.query_one("#kernels", DataTable)
        if kernels and profile_data.is_sweep_record(kernels[0]):
            self._update_sweep_table(table, kernels, header)
            return
        new = kernels[self._kernel_rows:]
        if not new:
            if not kernels:
                table.border_subtitle = "waiting for the first kernel timing"
            return
        skip = {"kind", "time"}
        for rec in new:
            for key in rec:
                if key not in skip and key not in self._kernel_columns:
                    self._kernel_columns.append(key)
                    table.add_column(key, key=key)
        for rec in new:
            cells = []
            for key in self._kernel_columns:
                v = rec.get(key)
                if isinstance(v, float):
                    v = format_number(v) if abs(v) >= 1 else f"{v:.3g}"
                cells.append("" if v is None else str(v))
            table.add_row(*cells)
        self._kernel_rows = len(kernels)
        table.border_subtitle = f"{len(kernels)} cases"

    def _update_sweep_table(self, table: DataTable, kernels: list[dict], header: dict) -> None:
        """The blocksparse sweep's table: fixed columns, WRONG in red, progress with ETA below."""
        cols = profile_data.columns(kernels, header.get("config"))
        if [key for key, _, _ in cols] != self._kernel_columns:
            table.clear(columns=True)  # first rows, or a compare column appeared
            self._kernel_columns = [key for key, _, _ in cols]
            self._kernel_rows = 0
            for key, label, _ in cols:
                table.add_column(label, key=key)
        at_end = table.cursor_row >= table.row_count - 1
        for i, rec in enumerate(kernels[self._kernel_rows:], start=self._kernel_rows + 1):
            justify = {key: "right" if right else "left" for key, _, right in cols}
            table.add_row(*(Text(profile_data.cell(rec, key, i), style=profile_data.cell_style(rec, key),
                                 justify=justify[key]) for key, _, _ in cols), key=str(i))
        if len(kernels) > self._kernel_rows and at_end:
            table.move_cursor(row=len(kernels) - 1)
        self._kernel_rows = len(kernels)
        total = header.get("total")
        done = header.get("step") or len(kernels)
        status = header.get("status", "running")
        eta = header.get("eta") if status == "running" else None
        counts = profile_data.counts(kernels)
        subtitle = profile_data.progress_text(done, total, eta)
        if status != "running":
            subtitle += f"  {status}"
        bad = "  ".join(f"{counts[k]} {k}" for k in ("WRONG", "error") if counts[k])
        if bad:
            subtitle += f"  [red]{bad}[/]"
        if table.border_subtitle != subtitle:
            table.border_subtitle = subtitle

    def remote_trainer(self) -> str | None:
        """The trainer's host when it is not this one: local telemetry would describe the wrong machine."""
        host = self.trainer[1]
        return host if host and host != socket.gethostname() else None

    def _show_run_gpu(self, record: dict) -> None:
        """GPU samples the trainer logged into the run: what a viewer on another host can show."""
        fields = {f for f in telemetry.GpuInfo.__dataclass_fields__}
        gpus = []
        for g in record.get("gpus") or []:
            procs = [telemetry.GpuProcess(**{k: v for k, v in p.items() if k in ("pid", "used_bytes", "name",
                                                                                 "is_trainer")})
                     for p in g.get("processes") or []]
            gpus.append(telemetry.GpuInfo(**{**{k: v for k, v in g.items() if k in fields}, "processes": procs}))
        sample = telemetry.GpuSample(record.get("time", 0.0), gpus, record.get("trainer_match", ""))
        self._render_telemetry(sample, "", f"GPU (logged on {self.remote_trainer()})")

    @while_mounted
    def on_telemetry_ready(self, message: TelemetryReady) -> None:
        if self._panels_gone():
            return
        if self.remote_trainer() and self.frame is not None and self.frame.run_gpu:
            return  # the run's own GPU samples are shown instead (see on_frame_ready)
        self._render_telemetry(message.sample, message.reason)

    def _render_telemetry(self, sample, reason: str, title: str | None = None) -> None:
        panel = self.query_one("#gpu", Static)
        width = panel.size.width or 40
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
        if panel.border_title != title:
            panel.border_title = title
        panel.update(text)

    @while_mounted
    def _tick_header(self) -> None:
        frame = self.frame
        widget = self.query_one("#header", Static)
        if frame is None:
            text = Text(f"loading {', '.join(p.name for p in self.run_dirs)} ...")
        else:
            text = self._header_text(frame)
        key = text.markup
        if key != self._last_header:
            self._last_header = key
            widget.update(text)

    def _header_text(self, frame: Frame) -> Text:
        now = time.time()
        text = Text(no_wrap=True, overflow="ellipsis")
        rows = frame.header
        if len(rows) == 1:
            h = rows[0]
            status = h["status"]
            if self.settings.paused:
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
            text.append(f"  {'case' if self.is_profile else 'step'} {step}")
            if h["eta"] is not None:
                text.append(f"  ETA {format_duration(h['eta'])}")
            if h["last_return"] is not None:
                text.append(f"  return {h['last_return']:.4g}")
            text.append("\n")
            hp = "  ".join(f"{k}={v}" for k, v in h["hp"])
            text.append(f"{h['name']}  {hp}", style="dim")
        else:
            text.append(f"{len(rows)} runs  ", style="bold")
            for i, h in enumerate(rows):
                text.append("━ ", style=colour(i))
                text.append(f"{h['name']} ")
                text.append(h["status"], style=STATUS_COLOURS.get(h["status"], "white"))
                text.append(f" {h['step']:,}  ")
            if self.settings.paused:
                text.append("(paused)")
            text.append("\n")
            algos = sorted({f"{h['algo']} {h['env'] or ''}".strip() for h in rows})
            text.append(", ".join(algos), style="dim")
        if frame.error:
            text.append(f"  {frame.error}", style="red")
        return text

    def _update_keys(self) -> None:
        s = self.settings
        if self.is_profile:
            self.query_one("#keys", Static).update(
                f"? help  p {'resume' if s.paused else 'pause'}  ↑/↓ scroll cases  q quit")
            return
        axis = "wall time" if s.x_axis == "time" else "env steps"
        parts = [f"? help  s/S smoothing {s.smoothing:g}  x axis: {axis}  l log{' on' if s.log_y else ''}",
                 f"p {'resume' if s.paused else 'pause'}", "j/k loss", "q quit"]
        self.query_one("#keys", Static).update("  ".join(parts))

    # -- actions -----------------------------------------------------------------------------------
    def _settings_changed(self, **changes) -> None:
        new = replace(self.settings, **changes)
        if new != self.settings:
            self.settings = new  # one attribute store: the worker sees the old or the new object
            self._wake.set()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(list(self.BINDINGS), self.is_profile))

    def action_smoothing(self, direction: int) -> None:
        steps = SMOOTHING_STEPS
        current = min(range(len(steps)), key=lambda i: abs(steps[i] - self.settings.smoothing))
        self._settings_changed(smoothing=steps[max(0, min(len(steps) - 1, current + direction))])
        self._update_keys()

    def action_toggle_axis(self) -> None:
        self._settings_changed(x_axis="time" if self.settings.x_axis == "step" else "step")
        self._update_keys()

    def action_toggle_log(self) -> None:
        self._settings_changed(log_y=not self.settings.log_y)
        self._update_keys()

    def action_toggle_pause(self) -> None:
        self._settings_changed(paused=not self.settings.paused)
        self._update_keys()
        self._tick_header()

    def action_loss(self, direction: int) -> None:
        self._settings_changed(loss_index=self.settings.loss_index + direction)

    def owns_live_trainer(self) -> bool:
        if self.owned is None or self.owned.poll() is not None:
            return False
        # A producer that has closed its run (finished, failed) is only exiting: nothing to stop.
        header = self.frame.header if self.frame is not None else []
        return not header or header[0].get("status") in ("running", "unknown")

    def action_quit_dashboard(self) -> None:
        if isinstance(self.screen, HelpScreen):  # q closes the help first, as it says
            self.screen.dismiss(None)
            return
        if self._stopping or not self.owns_live_trainer():
            if self._stopping:
                self.outcome = "detached"  # the stop request stands; the trainer finishes on its own
            self.exit()
            return
        if isinstance(self.screen, QuitDialog):
            return
        self.push_screen(QuitDialog(self.run_dirs[0].name, self.is_profile), self._on_quit_choice)

    def _on_quit_choice(self, choice: str | None) -> None:
        if choice == "detach":
            self.outcome = "detached"
            self.exit()
        elif choice == "stop":
            self.stop_owned_trainer()

    def stop_owned_trainer(self) -> None:
        """Ask for a clean stop (control file + SIGTERM), then close once the trainer has exited."""
        self._stopping = True
        request_stop(self.run_dirs[0])
        try:
            self.owned.send_signal(signal.SIGTERM)
        except (ProcessLookupError, OSError):
            pass
        self.notify("Stopping: the trainer finishes its step and saves a checkpoint (q to leave now).",
                    timeout=10)
        self._wait_for_trainer()

    @work(thread=True, exclusive=True, group="stop")
    def _wait_for_trainer(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self._stop_workers.is_set():
            if self.owned.poll() is not None:
                break
            time.sleep(0.1)
        if not self._stop_workers.is_set():
            self.outcome = "stopped" if self.owned.poll() is not None else "detached"
            self.call_from_thread(self.exit)

    def _terminal_gone(self) -> None:
        """SIGHUP (the SSH link dropped) or SIGTERM: leave now; a trainer in its own session goes on."""
        self.outcome = "detached"
        threading.Thread(target=_exit_soon, daemon=True).start()
        self.exit()


def lower_priority(increment: int = VIEWER_NICE) -> None:
    """Raise the nice value of every thread of this process (on Linux, nice is per thread)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except (OSError, AttributeError):
            pass


def _exit_soon(delay: float = 3.0) -> None:
    """If shutting down hangs writing to a terminal that is gone, leave anyway."""
    time.sleep(delay)
    os._exit(0)


def run_dashboard(run_dirs: list[Path | str], owned=None, preload: Preload | None = None) -> str:
    """Show the dashboard until the user quits; returns closed, detached or stopped.

    `owned` is the trainer's Popen when this viewer started it: quitting then asks stop or detach.
    `preload` is a `Preload` of the same runs started before Textual was imported.
    """
    app = Dashboard(run_dirs, owned=owned, preload=preload)
    app.yield_cpu = True
    app.run()
    name = Path(run_dirs[0]).name
    if owned is not None:
        if app.outcome == "stopped" or (owned.poll() is not None):
            try:
                status = read_manifest(run_dirs[0]).get("status", "unknown")
            except RunError:
                status = "unknown"
            print(f"run {name}: {status}", file=sys.stderr)
        elif app.outcome == "detached":
            print(f"detached: training goes on (pid {owned.pid}); watch again with: spintui watch {name}",
                  file=sys.stderr)
    return app.outcome
