"""Learning curves as Spinning Up's plot.py draws them: a value per epoch against steps or time,
smoothed per run, and the seeds of one configuration reduced to a mean and a standard deviation.

A curve comes from a spintui run (its epoch records, full precision), from a Spinning Up output
directory (progress.txt, with config.json's exp_name naming its configuration) or from a TensorBoard
run (one tag's scalars, a point per event; its configuration named as profiles/foreign_logs.py says). Seeds are aligned
by epoch: point i of a group is the mean (and population std, as Spinning Up's seaborn tsplot drew
it) over the runs that have an epoch i, at the mean x of those runs (the same steps for every seed;
for time, the mean time). numpy only; the drawing is tui/plot_command.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spintui.errors import UsageError
from spintui.profiles.config_groups import configuration
from spintui.profiles.foreign_logs import RETURN_TAGS, TENSORBOARD, TEST_RETURN_TAGS, read_all
from spintui.profiles.run_reader import RunReader
from spintui.profiles.sources import Source
from spintui.profiles.spinningup import read_config_json, read_progress
from spintui.profiles.store import RunPaths

# Spinning Up's "Performance": the first a run has (test returns first), TensorBoard's return tags too
PERFORMANCE = (*TEST_RETURN_TAGS, *RETURN_TAGS)
X_COLUMNS = {"steps": "TotalEnvInteracts", "time": "Time"}


@dataclass
class Curve:
    source: Source
    config: dict  # what makes its configuration (profiles/config_groups.py)
    columns: dict[str, np.ndarray]  # the epoch table, one float array per column

    def x(self, axis: str) -> np.ndarray:
        return self.columns[X_COLUMNS[axis]]

    def value_column(self, value: str | None) -> str:
        """The column to plot: `value`, or the test return falling back to the training return."""
        if value is not None:
            if value not in self.columns:
                raise UsageError(f"--value {value}: {self.source.label} has no column {value}; it has "
                                 f"{', '.join(self.columns)}")
            return value
        for name in PERFORMANCE:
            if name in self.columns and np.isfinite(self.columns[name]).any():
                return name
        raise UsageError(f"{self.source.label} has no AverageTestEpRet or AverageEpRet; pick one with --value")


def load_curve(source: Source, value: str | None = None) -> Curve:
    """The source's epoch table; for a TensorBoard run, the `value` tag (default: its return)."""
    if source.kind == TENSORBOARD:
        return _tensorboard_curve(source, value)
    if source.kind == "spinningup":
        columns = {k: np.asarray(v, dtype=np.float64)
                   for k, v in read_progress(RunPaths(source.path).progress).items()}
        exp_name = read_config_json(source.path).get("exp_name")
        config = {"exp_name": exp_name if isinstance(exp_name, str) and exp_name else "exp"}
        if "TotalEnvInteracts" not in columns and "Epoch" in columns:
            columns["TotalEnvInteracts"] = columns["Epoch"]
    else:
        reader = RunReader(source.path)
        update = reader.poll()
        manifest = reader.manifest
        config = configuration(manifest.get("algo"), manifest.get("env"), manifest.get("config") or {})
        rows = [r for r in update.records if r.get("kind") == "epoch" and isinstance(r.get("stats"), dict)]
        start = float(manifest.get("start_time") or 0.0)
        table = [{"Epoch": r.get("epoch"), "TotalEnvInteracts": r.get("step"),
                  "Time": _number(r.get("time")) - start, **r["stats"]} for r in rows]
        names = list(dict.fromkeys(k for row in table for k in row))
        columns = {k: np.array([_number(row.get(k)) for row in table], dtype=np.float64) for k in names}
    if "Time" not in columns:
        columns["Time"] = np.full(len(next(iter(columns.values()), [])), math.nan)
    return Curve(source, config, columns)


def _tensorboard_curve(source: Source, value: str | None) -> Curve:
    log, series = read_all(source.path)
    tag = value if value is not None else next((t for t in PERFORMANCE if t in series), None)
    if tag not in series:
        wanted = f"no tag {value}" if value is not None else "no return tag (" + ", ".join(RETURN_TAGS[:3]) + ")"
        raise UsageError(f"{source.label} has {wanted}; pick one with --value: {', '.join(series) or 'none yet'}")
    steps, times, values = series[tag]
    start = log.start_time if log.start_time is not None else (times[0] if len(times) else 0.0)
    return Curve(source, log.info()["config"], {"TotalEnvInteracts": steps, "Time": times - start, tag: values})


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Spinning Up's smoothing: the mean over a window of `window` points centred on each point
    (fewer at the ends)."""
    if window <= 1 or len(y) == 0:
        return np.asarray(y, dtype=np.float64)
    kernel = np.ones(window)
    return np.convolve(y, kernel, "same") / np.convolve(np.ones(len(y)), kernel, "same")


def points(curve: Curve, value: str | None, axis: str, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(x, smoothed y) of a curve, without the epochs where either is missing."""
    x, y = curve.x(axis), curve.columns[curve.value_column(value)]
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], smooth(y[keep], window)


def mean_and_std(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds aligned by epoch: mean x, mean y and population std of y over the runs at each index."""
    length = max((len(y) for y in ys), default=0)
    x_out, mean, std = np.empty(length), np.empty(length), np.empty(length)
    for i in range(length):
        at = [(x[i], y[i]) for x, y in zip(xs, ys) if i < len(y)]
        x_out[i] = np.mean([p[0] for p in at])
        values = np.array([p[1] for p in at])
        mean[i], std[i] = values.mean(), values.std()
    return x_out, mean, std
