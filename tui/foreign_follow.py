"""Headless watching of one TensorBoard or Spinning Up run: `spintui watch DIR` without a terminal.

It says what was found and which series feed which panel, prints a line with the newest values
whenever a poll brings new points (at most one a second), and once the run is finished (no file
grew for 60 s, profiles/foreign_logs.py) a table of every series and a summary line. A run that is
already finished prints the line and the table once. A viewer: Ctrl-C only stops following.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spintui.profiles.foreign_logs import RATE_TAGS, RETURN_TAGS, TEST_RETURN_TAGS, TENSORBOARD, tag_role
from spintui.tui.foreign_tail import ForeignTail
from spintui.tui.plot_data import format_number

POLL_S = 1.0
KIND_NAMES = {TENSORBOARD: "TensorBoard run", "spinningup": "Spinning Up run"}


def panels_line(tail: ForeignTail) -> str:
    """Which series feed which panel: `Return rollout/ep_rew_mean · Loss train/loss (+3) · ...`."""
    def first(names):
        return next((n for n in names if n in tail.scalars), None)

    parts = []
    for panel, name in (("Return", first(RETURN_TAGS)), ("Test", first(TEST_RETURN_TAGS)),
                        ("steps/s", first(RATE_TAGS))):
        if name:
            parts.append(f"{panel} {name}")
    losses = tail.loss_names()
    if losses:
        parts.append(f"Loss {losses[0]}" + (f" (+{len(losses) - 1} more, j/k)" if len(losses) > 1 else ""))
    return " · ".join(parts) or "no series yet"


def values_line(tail: ForeignTail) -> str:
    """The newest step and values: return, test return, the first loss, steps/s."""
    parts = [f"step {tail.current_step():,}"]
    train, test = tail.return_series()
    for label, series in (("return", train), ("test", test)):
        if series is not None and len(series):
            parts.append(f"{label} {series.last():.4g}")
    losses = tail.loss_names()
    if losses and len(tail.scalars[losses[0]]):
        parts.append(f"{losses[0]} {tail.scalars[losses[0]].last():.4g}")
    rate = tail.current_steps_per_sec()
    if rate is not None:
        parts.append(f"{format_number(rate)} steps/s")
    return "  ".join(parts)


def series_table(tail: ForeignTail) -> Table:
    table = Table(title=escape(f"{tail.name}: {len(tail.scalars)} series"), title_justify="left")
    for column in ("series", "role", "points", "last step", "last value"):
        table.add_column(column, justify="left" if column in ("series", "role") else "right", no_wrap=True)
    for name, series in tail.scalars.items():
        if len(series):
            table.add_row(escape(name), tag_role(name), f"{len(series):,}", f"{int(series.steps[-1]):,}",
                          f"{series.last():.6g}")
    return table


def follow_foreign(path: Path, console: Console | None = None, poll_s: float = POLL_S) -> str:
    """Print the run's progress until it is finished; returns its status."""
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log file: never fold the table
    tail = ForeignTail(path)
    tail.poll()
    what = KIND_NAMES.get(tail.log.kind, "run")
    console.print(f"{what} [bold]{escape(tail.name)}[/] in {escape(str(tail.run_dir.parent))}: "
                  f"{tail.status()} ({len(tail.scalars)} series, {tail.records:,} points)", highlight=False)
    console.print(escape(panels_line(tail)), highlight=False)
    console.print(escape(values_line(tail)), highlight=False)
    shown = tail.data_version
    try:
        while tail.status() == "running":
            time.sleep(poll_s)
            tail.poll()
            if tail.data_version != shown:
                shown = tail.data_version
                console.print(escape(values_line(tail)), highlight=False)
    except KeyboardInterrupt:
        console.print("stopped following (the run goes on)")
        return tail.status()
    console.print(series_table(tail))
    train, _ = tail.return_series()
    summary = f"{tail.status()}: {tail.current_step():,} steps"
    if train is not None and len(train):
        summary += f", return {train.last():.4g} ({train.name})"
    if tail.log.error:
        summary += f"; {tail.log.error}"
    console.print(f"{escape(summary)} -> {escape(str(tail.run_dir))}", highlight=False)
    return tail.status()
