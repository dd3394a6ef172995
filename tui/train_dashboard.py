"""The training dashboard: Return, Loss, GPU or System, and Timing panels for one or more runs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from spintui.tui.dashboard_base import AXIS_KEY, HELP_KEY, LOG_KEY, PAUSE_KEY, QUIT_KEY, SMOOTHING_KEYS, DashboardBase
from spintui.tui.frames import TrainFrame, train_frame
from spintui.tui.plot_data import format_number
from spintui.tui.screens import QuitText
from spintui.tui.trace_view import TraceScreen
from spintui.tui.widgets import PlotView, TelemetryPanel, legend_markup, phase_text


class TrainDashboard(DashboardBase):
    BINDINGS = [
        HELP_KEY,
        *SMOOTHING_KEYS,
        AXIS_KEY,
        LOG_KEY,
        PAUSE_KEY,
        Binding("j,down,right_square_bracket", "loss(1)", "next loss series"),
        Binding("k,up,left_square_bracket", "loss(-1)", "previous loss series"),
        Binding("t", "trace", "kernels of the latest trace (--trace)"),
        QUIT_KEY,
    ]
    build_frame = staticmethod(train_frame)
    HELP_PANELS = ("Panels: Return (raw, smoothed, test), Loss (j/k picks the series),\n"
                   "GPU or System, Timing (steps/s, time per phase). Once a trace is\n"
                   "logged, t shows its kernels and Timing splits the update by them.\n"
                   "Esc, q or ? close.")
    QUIT_TEXT = QuitText("Training is still running", "end the run cleanly (final checkpoint, status stopped).",
                         "close the dashboard, training goes on.")

    def compose_panels(self) -> ComposeResult:
        yield PlotView("Return", id="returns", classes="panel")
        yield PlotView("Loss", id="loss", classes="panel")
        yield TelemetryPanel()
        with Vertical(id="timing", classes="panel") as timing:
            timing.border_title = "Timing"
            yield PlotView(id="timing-plot")
            yield Static(id="phases")

    def keys_text(self) -> str:
        s = self.settings
        axis = "wall time" if s.x_axis == "time" else "env steps"
        parts = [f"? help  s/S smoothing {s.smoothing:g}  x axis: {axis}  l log{' on' if s.log_y else ''}",
                 f"p {'resume' if s.paused else 'pause'}", "j/k loss", "t kernels", "q quit"]
        return "  ".join(parts)

    def show_frame(self, frame: TrainFrame) -> None:
        returns = self.query_one("#returns", PlotView)
        if frame.returns is not None and returns.border_title != frame.returns.title:
            returns.border_title = frame.returns.title  # says where a resumed run went on
        returns.show(frame.returns, legend_markup(frame.returns, self.settings))
        loss_view = self.query_one("#loss", PlotView)
        if frame.loss_name:
            idx = frame.loss_names.index(frame.loss_name) + 1
            title = f"Loss: {frame.loss_name} ({idx}/{len(frame.loss_names)}, j/k)"
            if loss_view.border_title != title:
                loss_view.border_title = title
        loss_view.show(frame.loss, legend_markup(frame.loss, self.settings))
        rate = "" if frame.steps_per_sec is None else f"  {format_number(frame.steps_per_sec)} steps/s"
        timing = self.query_one("#timing")
        if timing.border_title != f"Timing{rate}":
            timing.border_title = f"Timing{rate}"
        self.query_one("#timing-plot", PlotView).show(frame.rate)
        phases = self.query_one("#phases", Static)
        text = phase_text(frame.phases, phases.size.width or 30, frame.update_split)
        if str(text) != getattr(phases, "_last_text", None):
            phases._last_text = str(text)
            phases.update(text)

    # -- actions -----------------------------------------------------------------------------------
    def action_trace(self) -> None:
        self.push_screen(TraceScreen(self.frame.trace if self.frame is not None else None))

    def action_loss(self, direction: int) -> None:
        self._settings_changed(loss_index=self.settings.loss_index + direction)
