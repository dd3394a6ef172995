"""Runs grouped by configuration, their seeds aggregated: what `spintui watch EXPERIMENT` shows.

A group is the runs of one configuration: algorithm, environment and resolved config (run.json's
"config") equal but for the seed (profiles/config_groups.py, by which `spintui plot` groups too):
the seeds of one point of an experiment's grid, or of any runs watched together. A group is named
after the settings that differ between the groups (`gamma=0.98, lr=0.001`). A TensorBoard or
Spinning Up run's configuration is its `exp_name` (profiles/foreign_logs.py), which names its group.

The Return plot shows, per group, the mean of its seeds' smoothed training returns with a band
behind it, mean +- std (population std over the seeds present) or min to max, on a grid of x
values; `series.across_seeds` states the rule for seeds of different lengths. The table gives per
group: its final test return (each run's last test return, then the mean +- population std over
the runs that have one), how many runs are finished, running, queued, stopped and crashed
(crashed, failed and damaged), and steps/s (the mean over the group's runs of each run's latest).

Pure functions of polled `RunTail`s and the view settings, without Textual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spintui.errors import RunError, UsageError
from spintui.profiles.config_groups import configuration, group_by_config, group_labels
from spintui.tui.data import RunTail
from spintui.tui.foreign_tail import source_manifest
from spintui.tui.plot_data import PlotBand, PlotData, PlotLine, ViewSettings, format_number, x_label, x_values
from spintui.tui.series import across_seeds, clean_curve, symlog

COUNTED = ("finished", "running", "queued", "stopped", "crashed")
COUNTED_AS = {"failed": "crashed", "damaged": "crashed"}
TABLE_COLUMNS = ("group", "seeds", "final test return", *COUNTED, "steps/s")
BAND_NAMES = {"std": "± std", "minmax": "min–max"}


def runs_kind(run_dirs: list) -> str:
    """The runs' kind (their manifests' `kind`; TensorBoard and Spinning Up runs train); runs of
    different kinds are an error."""
    if not run_dirs:
        raise RunError("no runs to watch")
    kinds = {str(source_manifest(p).get("kind") or "train") for p in run_dirs}
    if len(kinds) > 1:
        raise UsageError(f"cannot watch {' and '.join(sorted(kinds))} runs together; give runs of one kind")
    return kinds.pop()


def grouped(run_dirs: list, experiment=None) -> bool:
    """Whether runs are shown grouped by configuration: an experiment, or several training runs."""
    return runs_kind(run_dirs) == "train" and (experiment is not None or len(run_dirs) > 1)


@dataclass
class Group:
    label: str
    tails: list[RunTail] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # what makes the configuration (config_groups.configuration)


def group_runs(tails: list[RunTail]) -> list[Group]:
    """The tails grouped by configuration (profiles/config_groups.py, as `spintui plot` groups them),
    groups in the order of their first run, each named after the settings that tell them apart."""
    configs = [configuration(t.manifest.get("algo"), t.manifest.get("env"), t.manifest.get("config") or {})
               for t in tails]
    members = group_by_config(configs)
    labels = group_labels([configs[m[0]] for m in members])
    return [Group(label, [tails[i] for i in m], configs[m[0]]) for m, label in zip(members, labels)]


# --------------------------------------------------------------------------------------------------
# The Return plot


def seed_curve(tail: RunTail, settings: ViewSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's smoothed training returns against the x axis, cleaned (series.clean_curve). Kept on
    the tail: points that arrive after it, finite and in order, are checked alone and appended, so
    a live frame costs little per run."""
    train, _ = tail.return_series()
    if train is None or not len(train):
        return None
    y = train.smoothed(settings.smoothing) if settings.smoothing > 0 else train.values
    x = x_values(train, tail, settings.x_axis)
    key = (id(train), settings.smoothing, settings.x_axis)
    kept = tail.derived.get("seed_curve")  # (key, points done, the curve is x and y as they are, curve)
    if kept is not None and kept[0] == key and kept[3] is not None and kept[1] <= len(x):
        _, done, as_is, (old_x, old_y) = kept
        new_x, new_y = x[done:], y[done:]
        if done == len(x) or (np.isfinite(new_x).all() and np.isfinite(new_y).all() and new_x[0] >= old_x[-1]
                              and not np.any(new_x[1:] < new_x[:-1])):
            curve = (x, y) if as_is else (np.concatenate([old_x, new_x]), np.concatenate([old_y, new_y]))
            tail.derived["seed_curve"] = (key, len(x), as_is, curve)
            return curve
    curve = clean_curve(x, y)
    as_is = curve is not None and curve[0] is x and curve[1] is y
    tail.derived["seed_curve"] = (key, len(x), as_is, curve)
    return curve


def group_stats(group: Group, settings: ViewSettings):
    """`SeedStats` of the group's smoothed training returns (None before any episode)."""
    curves = [c for c in (seed_curve(t, settings) for t in group.tails) if c is not None]
    return across_seeds(curves, points=2 * settings.plot_width, clean=False) if curves else None


def group_layers(group: Group, index: int, settings: ViewSettings) -> tuple[PlotLine, PlotBand] | None:
    """The group's mean line and the band of its seeds' spread (None before any episode)."""
    stats = group_stats(group, settings)
    if stats is None:
        return None
    low, high = (stats.mean - stats.std, stats.mean + stats.std) if settings.band == "std" else \
        (stats.low, stats.high)
    mean = stats.mean
    if settings.log_y:
        mean, low, high = symlog(mean), symlog(low), symlog(high)
    return PlotLine(group.label, stats.x, mean, index), PlotBand(group.label, stats.x, low, high, index)


def group_return_plot(groups: list[Group], settings: ViewSettings, reuse: dict | None = None
                      ) -> tuple[PlotData, dict]:
    """Per group, the mean of its seeds' smoothed returns over a band of their spread; and the
    layers by group, for `reuse` by the next call: a group whose runs brought nothing new since
    (the settings unchanged) keeps its layers, so a live experiment recomputes only its live groups."""
    lines, bands, legend, layers = [], [], [], {}
    for i, group in enumerate(groups):
        key = (i, settings, tuple((id(t), t.data_version) for t in group.tails))
        kept = (reuse or {}).get(group.label)
        drawn = kept[1] if kept is not None and kept[0] == key else group_layers(group, i, settings)
        layers[group.label] = (key, drawn)
        legend.append((group.label, i))
        if drawn is not None:
            lines.append(drawn[0])
            bands.append(drawn[1])
    reason = "" if lines else "no episodes yet"
    return PlotData("Return", lines, x_label(settings), settings.log_y, reason, legend, bands), layers


# --------------------------------------------------------------------------------------------------
# The table


def final_test_return(tail: RunTail) -> float | None:
    """The run's last test return: as its progress says, else its last epoch's average, else the
    mean of the test episodes at its last test step; None when it has none."""
    value = (tail.manifest.get("progress") or {}).get("test_return")
    if _number(value):
        return float(value)
    stats = tail.epoch_stats.get("AverageTestEpRet")
    if stats is not None and len(stats):
        return stats.last()
    test = tail.test_episodes
    if len(test):
        steps = test.steps
        return float(np.mean(test.values[steps == steps[-1]]))
    return None


def group_row(group: Group, now: float) -> dict:
    counts = dict.fromkeys(COUNTED, 0)
    for tail in group.tails:
        status = tail.status(now)
        status = COUNTED_AS.get(status, status)
        if status in counts:
            counts[status] += 1
    finals = [f for f in map(final_test_return, group.tails) if f is not None]
    rates = [r for r in (t.current_steps_per_sec() for t in group.tails) if r is not None and math.isfinite(r)]
    return {
        "group": group.label, "runs": [t.name for t in group.tails], "seeds": len(group.tails), **counts,
        "final_mean": float(np.mean(finals)) if finals else None,
        "final_std": float(np.std(finals)) if finals else None, "final_n": len(finals),
        "steps_per_sec": float(np.mean(rates)) if rates else None,
    }


def group_rows(groups: list[Group], now: float) -> list[dict]:
    return [group_row(g, now) for g in groups]


def row_cells(row: dict) -> list[str]:
    """A row's cells in TABLE_COLUMNS order, as the dashboard and the headless table print them."""
    final = "-"
    if row["final_mean"] is not None:
        final = f"{row['final_mean']:.1f} ± {row['final_std']:.1f}"
        if row["final_n"] < row["seeds"]:
            final += f" ({row['final_n']} of {row['seeds']})"
    rate = "-" if row["steps_per_sec"] is None else format_number(row["steps_per_sec"])
    return [row["group"], str(row["seeds"]), final, *(str(row[k]) for k in COUNTED), rate]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
