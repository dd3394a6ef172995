"""What the plots show: the user's view settings, plot lines, and the Return, Loss and steps/s plots.

Built from `RunTail`s off the UI thread: each line is smoothed and decimated to about two points per
pixel column of the plot, so a widget only rasterises (tui/plot.py). Also the compact number and
duration formats that tick labels, headers and tables share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from spintui.tui.data import RunTail
from spintui.tui.series import Series, decimate_minmax, symlog


@dataclass(frozen=True)
class ViewSettings:
    """The user's view choices; the UI replaces the whole object, the data worker reads it."""

    smoothing: float = 0.6
    x_axis: str = "step"  # or "time"
    log_y: bool = False
    paused: bool = False
    loss_index: int = 0
    plot_width: int = 120  # pixel columns of the widest plot (2 per terminal cell for braille)
    band: str = "std"  # the spread across seeds: "std" (mean +- std) or "minmax"


SMOOTHING_STEPS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999)


@dataclass
class PlotLine:
    label: str
    x: np.ndarray
    y: np.ndarray
    colour: int  # index into the palette
    emphasis: str = "normal"  # "dim" for raw points under a smoothed curve, "bold" for test


@dataclass
class PlotBand:
    """A shaded area between `low` and `high` (the spread of a group's seeds), drawn behind the lines."""

    label: str
    x: np.ndarray
    low: np.ndarray
    high: np.ndarray
    colour: int


@dataclass
class PlotData:
    title: str
    lines: list[PlotLine]
    x_label: str
    log_y: bool
    empty_reason: str = ""
    legend: list[tuple[str, int]] = field(default_factory=list)
    bands: list[PlotBand] = field(default_factory=list)


def x_values(series: Series, tail: RunTail, x_axis: str) -> np.ndarray:
    if x_axis == "time":
        return series.times - tail.start_time
    return series.steps


def prepare_line(series: Series, tail: RunTail, settings: ViewSettings, label: str, colour: int,
                 smooth: bool, emphasis: str = "normal") -> PlotLine | None:
    if series is None or not len(series):
        return None
    y = series.smoothed(settings.smoothing) if smooth else series.values
    x = x_values(series, tail, settings.x_axis)
    if settings.log_y:
        y = symlog(y)
    x, y = decimate_minmax(x, y, settings.plot_width)
    keep = np.isfinite(y) & np.isfinite(x)
    if not keep.all():
        x, y = x[keep], y[keep]
    return PlotLine(label, x.copy(), y.copy(), colour, emphasis)


def return_plot(tails: list[RunTail], settings: ViewSettings) -> PlotData:
    lines: list[PlotLine] = []
    legend: list[tuple[str, int]] = []
    multi = len(tails) > 1
    for i, tail in enumerate(tails):
        train, test = tail.return_series()
        colour = i if multi else 0
        if train is not None and len(train):
            if not multi and settings.smoothing > 0:
                raw = prepare_line(train, tail, settings, "return", colour, smooth=False, emphasis="dim")
                if raw:
                    lines.append(raw)
            line = prepare_line(train, tail, settings, "smoothed", colour, smooth=settings.smoothing > 0)
            if line:
                lines.append(line)
        if test is not None and len(test):
            line = prepare_line(test, tail, settings, "test", i if multi else 2, smooth=False, emphasis="bold")
            if line:
                lines.append(line)
        legend.append((tail.name, colour))
    if not multi:
        names = {"return": "raw", "smoothed": "smoothed" if settings.smoothing > 0 else "return", "test": "test"}
        legend = [(names[ln.label], ln.colour) for ln in lines]
    reason = "" if lines else "no episodes yet"
    return PlotData(return_title(tails), lines, x_label(settings), settings.log_y, reason, legend)


def return_title(tails: list[RunTail]) -> str:
    """"Return", with where a resumed run went on from its checkpoint (a run or two: how many of several)."""
    resumed = [t for t in tails if t.resumes]
    if len(tails) == 1 and resumed:
        steps = ", ".join(f"{int(r['step']):,}" for r in resumed[0].resumes[-3:])
        return f"Return · resumed at step{'s' if len(resumed[0].resumes) > 1 else ''} {steps}"
    return f"Return · {len(resumed)} of {len(tails)} runs resumed" if resumed else "Return"


def loss_plot(tails: list[RunTail], settings: ViewSettings) -> tuple[PlotData, list[str], str | None]:
    names: list[str] = []
    for tail in tails:
        for n in tail.loss_names():
            if n not in names:
                names.append(n)
    if not names:
        return PlotData("Loss", [], x_label(settings), settings.log_y, "no losses logged yet"), names, None
    name = names[settings.loss_index % len(names)]
    lines = []
    for i, tail in enumerate(tails):
        series = tail.loss_series(name)
        line = prepare_line(series, tail, settings, tail.name, i, smooth=settings.smoothing > 0)
        if line:
            lines.append(line)
    legend = [(t.name, i) for i, t in enumerate(tails)] if len(tails) > 1 else []
    return PlotData("Loss", lines, x_label(settings), settings.log_y, "", legend), names, name


def rate_plot(tails: list[RunTail], settings: ViewSettings) -> PlotData:
    linear = replace(settings, log_y=False)  # throughput reads best on a linear scale
    lines = []
    for i, tail in enumerate(tails):
        series = tail.steps_per_sec()
        line = prepare_line(series, tail, linear, tail.name, i if len(tails) > 1 else 1, smooth=False)
        if line:
            lines.append(line)
    return PlotData("steps/s", lines, x_label(linear), False, "" if lines else "no steps/s logged yet")


def x_label(settings: ViewSettings) -> str:
    return "time" if settings.x_axis == "time" else "steps"


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_number(v: float) -> str:
    """Compact tick label: 1.2k, 3.4M, 0.012, -250."""
    if v is None or not math.isfinite(v):
        return "n/a"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or a == 0:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"
