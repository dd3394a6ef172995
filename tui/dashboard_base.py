"""What the training and the profile dashboard share: the App around their panels.

Threads do the work, widgets only draw. A data worker polls the runs (tui/data.py), has the
dashboard's frame builder (tui/frames.py) turn them into a `Frame` and posts it in a `FrameReady`;
a telemetry worker samples NVML (or psutil) once a second and posts a `TelemetryReady`. Both
messages replace an older queued one of their kind, so a slow terminal never builds a backlog.
Plots repaint only when their data changed, at most once per refresh interval (1 s by default: the
run store flushes once a second). A subclass gives its panels, keys and frame builder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Static

from spintui.errors import RunError
from spintui.profiles import gpu as telemetry
from spintui.profiles.processes import request_clean_stop, wait_for_exit
from spintui.profiles.provenance import host_name
from spintui.tui.data import Preload, RunTail, poll_tails
from spintui.tui.foreign_tail import open_tail, source_manifest
from spintui.tui.frames import Frame
from spintui.tui.plot_data import SMOOTHING_STEPS, ViewSettings
from spintui.tui.screens import HelpScreen, QuitDialog, QuitText
from spintui.tui.widgets import TelemetryPanel, header_text

REFRESH_S = 1.0
# Once its first frame is on screen, a viewer drops to a lower CPU priority: when cores are scarce,
# training gets them first and the dashboard takes what is left.
VIEWER_NICE = 10
TELEMETRY_S = 1.0
STOP_WAIT_S = 120.0  # after this, a producer asked to stop is left to finish on its own

HELP_KEY = Binding("question_mark", "help", "help: list every key")
PAUSE_KEY = Binding("p", "toggle_pause", "pause / resume updates")
SMOOTHING_KEYS = [
    Binding("s,plus", "smoothing(1)", "smoothing up (TensorBoard EMA weight)"),
    Binding("S,minus", "smoothing(-1)", "smoothing down (0 shows raw only)"),
]
AXIS_KEY = Binding("x", "toggle_axis", "x axis: env steps / wall time")
LOG_KEY = Binding("l", "toggle_log", "log scale (symlog: losses may cross 0)")
QUIT_KEY = Binding("q,ctrl+c", "quit_dashboard", "quit (stop or detach a trainer it started)", priority=True)


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


class DashboardBase(App):
    CSS_PATH = "dashboard.tcss"
    TITLE = "spintui"
    ENABLE_COMMAND_PALETTE = False

    build_frame: ClassVar[Callable[..., Frame]]  # (tails, settings, now, error, previous) -> Frame
    PANELS_CLASS: ClassVar[str] = ""  # CSS class of the panel grid
    READ_SCALARS: ClassVar[bool] = True  # False: the panels need no scalar series (never read scalars.bin)
    PROGRESSIVE: ClassVar[bool] = False  # True: frames of the runs read so far while a Preload reads the rest
    STEP_NAME: ClassVar[str] = "step"  # what the header counts
    HELP_PANELS: ClassVar[str]  # the help screen's last lines: what each panel shows
    QUIT_TEXT: ClassVar[QuitText]

    def __init__(self, run_dirs: list[Path | str], owned=None, refresh_s: float = REFRESH_S,
                 telemetry_s: float = TELEMETRY_S, preload: Preload | None = None, telemetry: bool = True) -> None:
        super().__init__()
        self.preload = preload
        self.telemetry = telemetry  # False: no sampling (fixed screens for snapshot tests)
        self.run_dirs = [Path(p) for p in run_dirs]
        if not self.run_dirs:
            raise RunError("no runs to watch")
        self.owned = owned  # the producer's Popen when this viewer started it
        self.refresh_s = refresh_s
        self.telemetry_s = telemetry_s
        first = source_manifest(self.run_dirs[0])
        self.trainer: tuple[int | None, str | None] = (first.get("pid"), first.get("host"))
        self.settings = ViewSettings()
        self._wake = threading.Event()
        self._stop_workers = threading.Event()
        self.frame: Frame | None = None
        self.outcome = "closed"  # what run_dashboard reports: closed, detached, stopped
        self._stopping = False
        self._last_header = None
        self._shown_run_gpu = None
        self.yield_cpu = False  # run_dashboard sets it: lower priority after the first frame

    # -- what a dashboard gives ----------------------------------------------------------------------
    def compose_panels(self) -> ComposeResult:
        raise NotImplementedError

    def show_frame(self, frame: Frame) -> None:
        """Hand a new frame's data to the panels."""
        raise NotImplementedError

    def keys_text(self) -> str:
        raise NotImplementedError

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Container(id="panels", classes=self.PANELS_CLASS):
            yield from self.compose_panels()
        yield Static(id="keys")

    def on_mount(self) -> None:
        self._update_keys()
        self._settings_changed(plot_width=max(40, self.size.width))
        self._data_worker()
        if self.telemetry:
            self._telemetry_worker()
        else:
            self.query_one("#gpu", TelemetryPanel).show_off()
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
        tails = self._preloaded() if self.preload is not None else None
        if tails is None:
            tails = [open_tail(p, read_scalars=self.READ_SCALARS) for p in self.run_dirs]
        frame = None
        while not self._stop_workers.is_set():
            settings = self.settings
            error = "" if settings.paused else poll_tails(tails)
            built = self.build_frame(tails, settings, time.time(), error, frame)
            if built is not frame:
                frame = built
                self.post_message(FrameReady(frame))
            self._wake.wait(self.refresh_s)
            self._wake.clear()

    def _preloaded(self) -> list[RunTail] | None:
        """The Preload's tails; meanwhile a PROGRESSIVE dashboard shows the runs read so far, twice
        a second (reading many large runs for the first time takes a while)."""
        frame = None
        while self.PROGRESSIVE and not self._stop_workers.is_set():
            ready, done = self.preload.loaded()
            if done:
                break
            if ready:
                built = self.build_frame(ready, self.settings, time.time(), "", frame)
                if built is not frame:
                    frame = built
                    self.post_message(FrameReady(frame))
            self._stop_workers.wait(0.5)
        return self.preload.tails()

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
        self.show_frame(frame)
        if frame.gpu_history and frame.run_gpu is not self._shown_run_gpu:
            # The run's own GPU history wins over this host's sampling: it describes the run's GPU
            # wherever the viewer is, also after the run ended.
            self._shown_run_gpu = frame.run_gpu
            host = frame.run_host if frame.run_host and frame.run_host != host_name() else None
            self.query_one("#gpu", TelemetryPanel).show_history(frame.gpu_history, host)
        self._tick_header()

    def remote_trainer(self) -> str | None:
        """The trainer's host when it is not this one: local telemetry would describe the wrong machine."""
        host = self.trainer[1]
        return host if host and host != host_name() else None

    @while_mounted
    def on_telemetry_ready(self, message: TelemetryReady) -> None:
        if self._panels_gone():
            return
        if self.frame is not None and self.frame.gpu_history:
            return  # the run's own GPU history is shown instead (see on_frame_ready)
        self.query_one("#gpu", TelemetryPanel).show_sample(message.sample, message.reason)

    @while_mounted
    def _tick_header(self) -> None:
        if self.frame is None:
            text = Text(f"loading {', '.join(p.name for p in self.run_dirs)} ...")
        else:
            text = self.header_text(self.frame)
        if text.markup != self._last_header:
            self._last_header = text.markup
            self.query_one("#header", Static).update(text)

    def header_text(self, frame: Frame) -> Text:
        return header_text(frame, self.settings.paused, self.STEP_NAME)

    def _update_keys(self) -> None:
        self.query_one("#keys", Static).update(self.keys_text())

    # -- actions -----------------------------------------------------------------------------------
    def _settings_changed(self, **changes) -> None:
        new = replace(self.settings, **changes)
        if new != self.settings:
            self.settings = new  # one attribute store: the worker sees the old or the new object
            self._wake.set()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(list(self.BINDINGS), self.HELP_PANELS))

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
        self.push_screen(QuitDialog(self.run_dirs[0].name, self.QUIT_TEXT), self._on_quit_choice)

    def _on_quit_choice(self, choice: str | None) -> None:
        if choice == "detach":
            self.outcome = "detached"
            self.exit()
        elif choice == "stop":
            self.stop_owned_trainer()

    def stop_owned_trainer(self) -> None:
        """Ask for a clean stop (control file + SIGTERM), then close once the trainer has exited."""
        self._stopping = True
        request_clean_stop(self.run_dirs[0], self.owned)
        self.notify("Stopping: the trainer finishes its step and saves a checkpoint (q to leave now).",
                    timeout=10)
        self._wait_for_trainer()

    @work(thread=True, exclusive=True, group="stop")
    def _wait_for_trainer(self) -> None:
        exited = wait_for_exit(self.owned, STOP_WAIT_S, cancel=self._stop_workers)
        if not self._stop_workers.is_set():
            self.outcome = "stopped" if exited else "detached"
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
