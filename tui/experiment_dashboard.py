"""The experiment dashboard: `spintui watch EXPERIMENT` (or several training runs) in a terminal.

Runs are grouped by configuration (tui/run_groups.py): the Return panel draws each group's mean
smoothed return over a band of its seeds' spread (b: mean +- std or min to max), the Groups table
gives each group's final test return, runs by status and steps/s; then GPU or System. It reads no
scalar series (losses), so attaching to many big runs stays fast.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from spintui.errors import RunError
from spintui.profiles.experiments import experiment_status, read_experiment
from spintui.tui.dashboard_base import AXIS_KEY, HELP_KEY, LOG_KEY, PAUSE_KEY, QUIT_KEY, SMOOTHING_KEYS, DashboardBase
from spintui.tui.data import RunTail
from spintui.tui.frames import ExperimentFrame, ExperimentInfo, experiment_frame
from spintui.tui.plot import colour
from spintui.tui.run_groups import BAND_NAMES, COUNTED, TABLE_COLUMNS, row_cells
from spintui.tui.screens import QuitText
from spintui.tui.widgets import STATUS_COLOURS, PlotView, TelemetryPanel, legend_markup, what_runs


class GroupTable(DataTable):
    """A row per group, its label in the group's plot colour; rebuilt only when a cell changed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(zebra_stripes=False, cursor_type="row", **kwargs)
        self.border_title = "Groups"
        self._cells: list[list[str]] | None = None

    def on_mount(self) -> None:
        for column in TABLE_COLUMNS:
            self.add_column(column, key=column)

    def show(self, rows: list[dict]) -> None:
        cells = [row_cells(row) for row in rows]
        if cells == self._cells:
            return
        old = self._cells or []
        if len(old) == len(cells) and all(a[0] == b[0] for a, b in zip(old, cells)):
            for i, (before, after) in enumerate(zip(old, cells)):  # the same groups: only what changed
                for column, (a, b) in enumerate(zip(before, after)):
                    if a != b:
                        self.update_cell(str(i), TABLE_COLUMNS[column], self._cell(i, column, b))
        else:
            cursor = self.cursor_row
            self.clear()
            for i, row in enumerate(cells):
                self.add_row(*(self._cell(i, column, text) for column, text in enumerate(row)), key=str(i))
            if cells and 0 <= cursor < len(cells):
                self.move_cursor(row=cursor)
            self.border_subtitle = f"{len(cells)} groups" if len(cells) != 1 else "1 group"
        self._cells = cells

    @staticmethod
    def _cell(row: int, column: int, text: str) -> Text:
        return Text(text, style=colour(row)) if column == 0 else Text(text, justify="right")


class ExperimentDashboard(DashboardBase):
    BINDINGS = [
        HELP_KEY,
        *SMOOTHING_KEYS,
        AXIS_KEY,
        LOG_KEY,
        Binding("b", "toggle_band", "band across seeds: mean ± std / min–max"),
        PAUSE_KEY,
        QUIT_KEY,
    ]
    PANELS_CLASS = "experiment"
    READ_SCALARS = False
    PROGRESSIVE = True
    HELP_PANELS = ("Panels: Return (a line per configuration: the mean of its seeds'\n"
                   "smoothed returns, over a band of their spread, ± std or min–max (b);\n"
                   "a seed counts only over the steps it has reached), GPU or System,\n"
                   "Groups (final test return mean ± std over the seeds, runs by status,\n"
                   "mean steps/s). Esc, q or ? close.")
    QUIT_TEXT = QuitText("Training is still running", "end the run cleanly (final checkpoint, status stopped).",
                         "close the dashboard, training goes on.")

    def __init__(self, run_dirs: list[Path | str], experiment: Path | str | None = None, **kwargs) -> None:
        super().__init__(run_dirs, **kwargs)
        self.experiment = Path(experiment) if experiment is not None else None
        self._experiment_data: tuple[tuple | None, dict | None] = (None, None)

    def compose_panels(self) -> ComposeResult:
        yield PlotView("Return", id="returns", classes="panel")
        yield TelemetryPanel()
        yield GroupTable(id="groups", classes="panel")

    def build_frame(self, tails: list[RunTail], settings, now: float, error: str,
                    previous: ExperimentFrame | None) -> ExperimentFrame:
        """Runs in the data worker: experiment.json is read here, when it changed."""
        return experiment_frame(tails, settings, now, error, previous, self._experiment_info(tails, now))

    def _experiment_info(self, tails: list[RunTail], now: float) -> ExperimentInfo:
        if self.experiment is None:
            return ExperimentInfo(None, "", len(self.run_dirs))
        stamp, data = self._experiment_data
        try:
            st = os.stat(self.experiment / "experiment.json")
            if (st.st_mtime_ns, st.st_size, st.st_ino) != stamp:
                data = read_experiment(self.experiment)
                self._experiment_data = ((st.st_mtime_ns, st.st_size, st.st_ino), data)
        except (OSError, RunError):
            pass  # keep what was read last
        if data is None:
            return ExperimentInfo(self.experiment.name, "unknown", len(self.run_dirs))
        if len(tails) < len(self.run_dirs):  # still reading: the others' status is not known yet
            return ExperimentInfo(self.experiment.name, "", len(self.run_dirs))
        statuses = {t.name: t.status(now) for t in tails}
        return ExperimentInfo(self.experiment.name, experiment_status(self.experiment, data, now, statuses),
                              len(self.run_dirs))

    def keys_text(self) -> str:
        s = self.settings
        axis = "wall time" if s.x_axis == "time" else "env steps"
        return (f"? help  s/S smoothing {s.smoothing:g}  x axis: {axis}  l log{' on' if s.log_y else ''}  "
                f"b band: {BAND_NAMES[s.band]}  p {'resume' if s.paused else 'pause'}  q quit")

    def show_frame(self, frame: ExperimentFrame) -> None:
        view = self.query_one("#returns", PlotView)
        title = f"Return: mean of seeds, band {BAND_NAMES[self.settings.band]} (b)"
        if view.border_title != title:
            view.border_title = title
        view.show(frame.returns, legend_markup(frame.returns, self.settings))
        self.query_one("#groups", GroupTable).show(frame.groups)

    def header_text(self, frame: ExperimentFrame) -> Text:
        return experiment_header(frame, self.settings.paused)

    def action_toggle_band(self) -> None:
        self._settings_changed(band="minmax" if self.settings.band == "std" else "std")
        self._update_keys()


def experiment_header(frame: ExperimentFrame, paused: bool) -> Text:
    """Two lines: the experiment (or the runs) with its status and runs by status; then what runs."""
    text = Text(no_wrap=True, overflow="ellipsis")
    rows = frame.header
    text.append(frame.title, style="bold")
    if frame.status:
        text.append("  ")
        text.append(frame.status, style=STATUS_COLOURS.get(frame.status, "white"))
    counts = Counter(row["status"] for row in rows)
    shown = [f"{counts[s]} {s}" for s in (*COUNTED, "failed", "damaged", "unknown") if counts[s]]
    groups = f"{len(frame.groups)} group{'' if len(frame.groups) == 1 else 's'}"
    text.append(f"  {' · '.join(shown)}  ({len(rows)} run{'' if len(rows) == 1 else 's'}, {groups})")
    if len(rows) < frame.runs_total:
        text.append(f"  reading runs: {len(rows)} of {frame.runs_total} ...", style="yellow")
    text.append("  (paused)" if paused else "")
    return what_runs(text, rows, frame.error)
