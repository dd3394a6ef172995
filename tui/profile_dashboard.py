"""The profile dashboard: a kernel sweep's table of cases, its speedup chart, and GPU or System."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding

from spintui.tui.dashboard_base import HELP_KEY, PAUSE_KEY, QUIT_KEY, DashboardBase
from spintui.tui import profile_data
from spintui.tui.frames import ProfileFrame, profile_frame
from spintui.tui.screens import QuitText
from spintui.tui.widgets import KernelTable, PlotView, TelemetryPanel, header_text, legend_markup


class ProfileDashboard(DashboardBase):
    BINDINGS = [HELP_KEY, PAUSE_KEY,
                Binding("o", "sort", "sort operations (profile train)"),
                QUIT_KEY]  # the focused table takes ↑/↓ to scroll its cases
    build_frame = staticmethod(profile_frame)
    PANELS_CLASS = "profile"
    STEP_NAME = "case"
    HELP_PANELS = ("Panels: Kernels (a row per case as it finishes; WRONG: failed the dense check,\n"
                   "never timed), Speedup vs density per block size with the ideal 1/density,\n"
                   "GPU or System. A training profile (profile train): its update's operations\n"
                   "with their share of the update, and the Return plot. Esc, q or ? close.")
    QUIT_TEXT = QuitText("The profile is still running", "end it after the current case (status stopped).",
                         "close the dashboard, the sweep goes on.")

    def compose_panels(self) -> ComposeResult:
        yield KernelTable(id="kernels", classes="panel")
        yield PlotView("Speedup vs density (log y)", id="speedup", classes="panel")
        yield TelemetryPanel()

    def keys_text(self) -> str:
        return f"? help  p {'resume' if self.settings.paused else 'pause'}  ↑/↓ scroll  o sort  q quit"

    sort = "self_s"

    @staticmethod
    def training(frame: ProfileFrame) -> bool:
        """A training profile (profile train) rather than a kernel sweep: its header has no sweep config."""
        return bool(frame.header and frame.header[0].get("algo") and "config" not in frame.header[0])

    def header_text(self, frame: ProfileFrame):
        return header_text(frame, self.settings.paused, "step" if self.training(frame) else self.STEP_NAME)

    def show_frame(self, frame: ProfileFrame) -> None:
        self.query_one("#kernels", KernelTable).show(frame.kernels, frame.header[0] if frame.header else {}, self.sort)
        plot = self.query_one("#speedup", PlotView)
        if self.training(frame) and frame.speedup is not None and plot.border_title != frame.speedup.title:
            plot.border_title = frame.speedup.title  # a training profile's second panel: its returns
        plot.show(frame.speedup, legend_markup(frame.speedup))

    def action_sort(self) -> None:
        sorts = profile_data.TRACE_SORTS
        self.sort = sorts[(sorts.index(self.sort) + 1) % len(sorts)]
        if self.frame is not None:
            self.show_frame(self.frame)
