"""Headless watching of an experiment, or of several runs: the table of their groups (tui/run_groups.py).

`spintui watch EXPERIMENT` without a terminal. Every second it reads what is new; it prints the
table when a run's status, a group's final test return or the experiment's status changed since
the table it printed last (steps/s alone does not print it again). It returns once nothing runs
any more (the experiment's scheduler has ended and no run is running), so an experiment that is
over prints its table once. A viewer: Ctrl-C stops following, never the training.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spintui.errors import RunError
from spintui.profiles.experiments import experiment_status, read_experiment
from spintui.tui.data import poll_tails
from spintui.tui.foreign_tail import open_tail
from spintui.tui.run_groups import COUNTED, TABLE_COLUMNS, group_rows, group_runs, row_cells

POLL_S = 1.0


def follow_groups(run_dirs: list[Path], experiment: Path | None = None, console: Console | None = None,
                  poll_s: float = POLL_S) -> str:
    """Print the group table whenever it changes until nothing runs any more; returns the status."""
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log file: never fold the table's columns
    tails = [open_tail(p, read_scalars=False) for p in run_dirs]
    data: dict | None = None
    shown = None
    while True:
        error = poll_tails(tails)
        now = time.time()
        rows = group_rows(group_runs(tails), now)
        statuses = {t.name: t.status(now) for t in tails}
        if experiment is not None:
            try:
                data = read_experiment(experiment)
            except RunError as exc:  # damaged while we watch: go on with what was read last
                error = error or str(exc)
        status = experiment_status(experiment or Path(), data or {"runs": []}, now, statuses)
        key = (status, [(r["group"], *(r[k] for k in COUNTED), r["final_mean"], r["final_std"]) for r in rows])
        if key != shown:
            shown = key
            title = f"experiment {experiment.name}" if experiment is not None else f"{len(tails)} runs"
            console.print(group_table(rows, f"{title}: {status}", error))
        if status != "running":
            return status
        time.sleep(poll_s)


def group_table(rows: list[dict], title: str, error: str = "") -> Table:
    table = Table(title=escape(title), title_justify="left", caption=escape(error or time.strftime("%H:%M:%S")),
                  caption_justify="left")
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "group" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*map(escape, row_cells(row)))
    return table
