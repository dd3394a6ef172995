"""What one dashboard frame shows, built from the polled runs and the view settings.

Pure functions of their inputs, without Textual: the dashboards' data worker polls the runs, calls
a builder and posts what it returns. A builder hands back the previous frame itself when nothing it
shows has changed (the worker then posts nothing), and reuses the previous plot objects while their
data and the settings are unchanged, so widgets can skip repainting by comparing identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from spintui.profiles import trace_table
from spintui.tui import profile_data
from spintui.tui.data import RunTail
from spintui.tui.plot_data import PlotData, ViewSettings, loss_plot, rate_plot, return_plot
from spintui.tui.run_groups import group_return_plot, group_rows, group_runs


@dataclass(kw_only=True)
class Frame:
    """What both dashboards show: a header row per run, the producer whose telemetry to sample."""

    header: list[dict]
    trainer: tuple[int | None, str | None]  # (pid, host) of a live producer, else (None, None)
    error: str = ""
    run_gpu: dict | None = None  # the newest `gpu` record a trainer logged (GpuLogger)
    gpu_history: dict = field(default_factory=dict, repr=False)  # its GPU history (GpuHistory.view())
    run_host: str | None = None  # where that producer runs (ran)
    # What it was built from: its plots are reused while `plots_from` is equal, the frame while `shows` is.
    plots_from: tuple = field(default=(), repr=False)
    shows: tuple = field(default=(), repr=False)

    PLOTS: ClassVar[tuple[str, ...]] = ()  # the fields a builder reuses while their data is unchanged


@dataclass(kw_only=True)
class TrainFrame(Frame):
    PLOTS: ClassVar[tuple[str, ...]] = ("returns", "loss", "loss_names", "loss_name", "rate")

    returns: PlotData | None = None
    loss: PlotData | None = None
    loss_names: list[str] = field(default_factory=list)
    loss_name: str | None = None
    rate: PlotData | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    steps_per_sec: float | None = None
    trace: dict | None = None  # the latest `trace` record (--trace), for the kernels view
    update_split: list[tuple[str, float]] = field(default_factory=list)  # its largest ops' shares of the update


@dataclass(kw_only=True)
class ProfileFrame(Frame):
    PLOTS: ClassVar[tuple[str, ...]] = ("speedup",)

    kernels: list[dict] = field(default_factory=list)
    speedup: PlotData | None = None  # speedup against density per block size


@dataclass(kw_only=True)
class ExperimentFrame(Frame):
    """Runs grouped by configuration: a Return plot with a band per group, and the groups' table."""

    PLOTS: ClassVar[tuple[str, ...]] = ("returns", "layers")

    returns: PlotData | None = None
    layers: dict = field(default_factory=dict, repr=False)  # each group's plot layers (group_return_plot)
    groups: list[dict] = field(default_factory=list)  # run_groups.group_row per group
    title: str = ""  # "experiment NAME", or "N runs"
    status: str = ""  # the experiment's status; "" for runs outside one
    runs_total: int = 0  # the runs the view shows once every one is read (more than `header` before)


@dataclass(frozen=True)
class ExperimentInfo:
    """What the data worker knows about what it watches: the experiment (name and status from
    experiment.json; None and "" for runs outside one) and how many runs there are in all."""

    name: str | None
    status: str
    runs: int = 0


def header_rows(tails: list[RunTail], now: float) -> list[dict]:
    return [{
        "name": t.name, "algo": t.manifest.get("algo") or t.manifest.get("benchmark") or t.kind,
        "env": t.manifest.get("env"), "status": t.status(now), "start": t.start_time,
        "elapsed": t.elapsed(now), "step": t.current_step(), "total": t.total_steps(),
        "eta": t.eta(now), "rate": t.current_steps_per_sec(), "hp": t.hyperparameters(),
        "records": t.records, "last_return": t.episodes.last() if len(t.episodes) else None,
    } for t in tails]


def profile_header_rows(tails: list[RunTail], now: float) -> list[dict]:
    """A sweep's header names its grid (sizes, blocks, ...) where a training run has env and hyperparameters."""
    rows = header_rows(tails, now)
    for row, tail in zip(rows, tails):
        row["env"], row["hp"] = profile_data.header_info(tail.manifest)
        row["config"] = tail.manifest.get("config") or {}
    return rows


def train_frame(tails: list[RunTail], settings: ViewSettings, now: float, error: str = "",
                previous: TrainFrame | None = None) -> TrainFrame:
    """The training dashboard's frame: Return, Loss and steps/s plots, phase times, headers."""
    def plots() -> dict:
        returns = return_plot(tails, settings)
        loss, loss_names, loss_name = loss_plot(tails, settings)
        return dict(returns=returns, loss=loss, loss_names=loss_names, loss_name=loss_name,
                    rate=rate_plot(tails, settings))

    def details() -> dict:
        trace = tails[0].traces[-1] if tails[0].traces else None
        return dict(header=header_rows(tails, now), phases=tails[0].phase_times(),
                    steps_per_sec=tails[0].current_steps_per_sec(), trace=trace,
                    update_split=trace_table.update_split(trace))

    return _build(TrainFrame, plots, details, tails, settings, now, error, previous)


def profile_frame(tails: list[RunTail], settings: ViewSettings, now: float, error: str = "",
                  previous: ProfileFrame | None = None) -> ProfileFrame:
    """The profile dashboard's frame: the sweep's kernel records, the speedup chart, headers."""
    if tails[0].manifest.get("benchmark") == "train":  # spintui profile train: a traced training run
        return _build(ProfileFrame, lambda: dict(speedup=return_plot(tails, settings)),
                      lambda: dict(header=header_rows(tails, now), kernels=trace_cases(tails[0])),
                      tails, settings, now, error, previous)

    def plots() -> dict:
        return dict(speedup=profile_data.speedup_plot(tails[0].kernels))

    def details() -> dict:
        return dict(header=profile_header_rows(tails, now), kernels=list(tails[0].kernels))

    return _build(ProfileFrame, plots, details, tails, settings, now, error, previous)


def trace_cases(tail: RunTail) -> list[dict]:
    """The rows of a training profile's latest trace, with verdicts against its baseline if it has one."""
    from spintui.tui.profile_train import compared

    rows = list((tail.traces[-1] if tail.traces else {}).get("rows") or [])
    verdicts = compared(rows, tail.manifest) if rows else None
    return verdicts["cases"] if verdicts else rows


def experiment_frame(tails: list[RunTail], settings: ViewSettings, now: float, error: str = "",
                     previous: ExperimentFrame | None = None, experiment: ExperimentInfo | None = None
                     ) -> ExperimentFrame:
    """The experiment dashboard's frame: the runs grouped by configuration (tui/run_groups.py)."""
    groups = group_runs(tails)

    def plots() -> dict:
        returns, layers = group_return_plot(groups, settings, previous.layers if previous is not None else None)
        return dict(returns=returns, layers=layers)

    def details() -> dict:
        total = max(len(tails), experiment.runs if experiment else 0)
        return dict(header=header_rows(tails, now), groups=group_rows(groups, now), runs_total=total,
                    title=f"experiment {experiment.name}" if experiment and experiment.name else f"{total} runs",
                    status=experiment.status if experiment else "")

    return _build(ExperimentFrame, plots, details, tails, settings, now, error, previous, also=experiment)


def _build(cls: type[Frame], plots: Callable[[], dict], details: Callable[[], dict], tails: list[RunTail],
           settings: ViewSettings, now: float, error: str, previous: Frame | None, also=None) -> Frame:
    """`previous` when nothing it shows changed; else a new `cls` frame, with `plots()` called only
    when the data or the settings changed, and a failing plot shown as the frame's error. `also`
    is anything else the details show."""
    plots_from = (settings, tuple(t.data_version for t in tails))
    shows = (tuple(t.version for t in tails), tuple(t.status(now) for t in tails), settings, also, error)
    if previous is not None and previous.plots_from == plots_from:
        if previous.shows == shows:
            return previous
        shown = {name: getattr(previous, name) for name in cls.PLOTS}
    else:
        try:
            shown = plots()
        except Exception as exc:  # odd data must not take the viewer down
            error = f"cannot plot: {type(exc).__name__}: {exc}"
            shows = (*shows[:-1], error)
            shown = {} if previous is None else {name: getattr(previous, name) for name in cls.PLOTS}
    live = [t for t in tails if t.status(now) == "running"]
    sampled = live[0] if live else tails[0]  # the first live producer's telemetry
    return cls(**shown, **details(), error=error, run_gpu=sampled.last_gpu, gpu_history=sampled.gpu_history.view(),
               run_host=sampled.manifest.get("host"),
               plots_from=plots_from, shows=shows,
               trainer=(sampled.manifest.get("pid"), sampled.manifest.get("host")) if live else (None, None))
