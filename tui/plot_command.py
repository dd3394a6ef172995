"""`spintui plot SOURCES... -o FIG.png`: learning curves as Spinning Up's plot.py draws them, with
matplotlib's Agg backend (no display needed; the `plot` extra).

Sources are spintui runs and experiments (path, name, glob, `latest`), TensorBoard log directories
(SB3, CleanRL, any SummaryWriter) and Spinning Up output directories. Seeds of one configuration
(same config except the seed; for the others, the same exp_name, see profiles/foreign_logs.py)
become one mean line with a +- std band; the data are profiles/curves.py's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spintui.errors import UsageError
from spintui.options import AT_LEAST_1, build, option
from spintui.tui.command_options import options_command, runs_dir_option, runs_dir_or_default

FORMATS = (".png", ".svg", ".pdf")


def _words(text: str | None) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()] if text else []


@dataclass
class PlotOptions:
    sources: list[str] = option([], "Runs, experiments (path, name, glob or 'latest'), TensorBoard log "
                                "directories and Spinning Up output directories.", argument=True, metavar="SOURCE...")
    output: Path | None = option(None, "The figure: FILE.png, .svg or .pdf.", flag="--output -o", metavar="FILE")
    value: str | None = option(None, "Epoch column or TensorBoard tag to plot, e.g. AverageEpRet, LossQ or "
                               "train/value_loss.", default_text="the test return, else the training return")
    xaxis: Literal["steps", "time"] = option("steps", "x axis: environment steps (TotalEnvInteracts) or "
                                             "seconds since the start (Time).")
    smooth: int = option(1, "Average each run over a window of N epochs first (Spinning Up's smoothing).",
                         range=AT_LEAST_1)
    legend: str | None = option(None, "Comma-separated names, one per line of the plot (per configuration), "
                                "in order.", metavar="NAME,...")
    select: str | None = option(None, "Keep only runs whose path contains every one of these comma-separated "
                                "substrings.", metavar="TEXT,...")
    exclude: str | None = option(None, "Leave out runs whose path contains any of these comma-separated "
                                 "substrings.", metavar="TEXT,...")
    runs_dir: Path | None = runs_dir_option()


@dataclass
class Line:
    label: str
    runs: list[str]
    x: object
    mean: object
    std: object


def plot_lines(opts: PlotOptions, warn=None) -> list[Line]:
    """The lines of the figure: one per configuration, the mean and std over its seeds."""
    from spintui.profiles.config_groups import group_by_config, group_labels
    from spintui.profiles.curves import load_curve, mean_and_std, points
    from spintui.profiles.sources import resolve_sources

    if not opts.sources:
        raise UsageError("give runs, experiments, TensorBoard log directories or Spinning Up output directories "
                         "to plot")
    sources = resolve_sources(opts.sources, runs_dir_or_default(opts.runs_dir), foreign=True, warn=warn)
    select, exclude = _words(opts.select), _words(opts.exclude)
    sources = [s for s in sources if all(w in str(s.path) for w in select)
               and not any(w in str(s.path) for w in exclude)]
    if not sources:
        raise UsageError("--select/--exclude left no runs to plot")
    curves = [load_curve(s, opts.value) for s in sources]
    data = [points(c, opts.value, opts.xaxis, opts.smooth) for c in curves]
    groups = group_by_config([c.config for c in curves])
    legend = _words(opts.legend)
    if legend and len(legend) != len(groups):
        raise UsageError(f"--legend has {len(legend)} names for {len(groups)} lines (configurations), "
                         f"in this order: {'; '.join(','.join(sources[i].label for i in g) for g in groups)}")
    labels = legend or group_labels([curves[g[0]].config for g in groups])
    lines = []
    for label, members in zip(labels, groups):
        x, mean, std = mean_and_std([data[i][0] for i in members], [data[i][1] for i in members])
        lines.append(Line(label, [sources[i].label for i in members], x, mean, std))
    return lines


def figure(lines: list[Line], opts: PlotOptions):
    """A matplotlib Figure (Agg): a line per configuration, a +- std band where it has several runs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for line in lines:
        (drawn,) = ax.plot(line.x, line.mean, label=f"{line.label} ({len(line.runs)} runs)"
                           if len(line.runs) > 1 else line.label)
        if len(line.runs) > 1:
            ax.fill_between(line.x, line.mean - line.std, line.mean + line.std, color=drawn.get_color(),
                            alpha=0.2, linewidth=0)
    ax.set_xlabel("TotalEnvInteracts" if opts.xaxis == "steps" else "Time (s)")
    ax.set_ylabel(opts.value or "Performance")
    if opts.xaxis == "steps" and any(len(line.x) and line.x.max() > 5e3 for line in lines):
        ax.ticklabel_format(style="sci", axis="x", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def plot(given: dict) -> None:
    """Plot learning curves of runs, experiments, TensorBoard log directories and Spinning Up output
    directories into a figure."""
    opts = build(PlotOptions, given)
    if opts.output is None:
        raise UsageError("say where to write the figure: -o FILE.png, .svg or .pdf")
    if opts.output.suffix.lower() not in FORMATS:
        raise UsageError(f"-o {opts.output}: the figure must end in {', '.join(FORMATS)}")
    if not opts.output.parent.is_dir():
        raise UsageError(f"-o {opts.output}: directory {opts.output.parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'spintui[plot]'") from None
    lines = plot_lines(opts, warn=lambda message: print(f"spintui: warning: {message}", file=sys.stderr))
    figure(lines, opts).savefig(opts.output)
    runs = sum(len(line.runs) for line in lines)
    print(f"{opts.output}: {len(lines)} line{'s' * (len(lines) != 1)} from {runs} run{'s' * (runs != 1)}")


COMMANDS = {"plot": options_command(plot, PlotOptions, doc=plot.__doc__, name="plot")}
