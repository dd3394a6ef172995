"""The dashboards' view of a TensorBoard or Spinning Up run: a `RunTail` fed by profiles/foreign_logs.py.

`open_tail` gives a `RunTail` for a spintui run and a `ForeignTail` for the others, so the
dashboards, the frame builders and the headless views take any mix of them. A `ForeignTail` keeps
every series under its own name (a tag, or a progress.txt column); the training and test returns
are the series of the return tags (profiles/foreign_logs.py `tag_role`), the Loss panel lists the
losses first and then every other series but counters, the Timing panel plots the steps/s tag (else
steps/s between consecutive return points). Its status is the log's: running while a file grew in
the last 60 s, else finished. Nothing here imports Textual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spintui.profiles.foreign_logs import RATE_TAGS, RETURN_TAGS, TEST_RETURN_TAGS, ForeignLog, is_foreign, tag_role
from spintui.profiles.store import read_manifest
from spintui.tui.data import KEY_HYPERPARAMETERS, NOT_A_LOSS, RunTail
from spintui.tui.series import Series

COUNTERS = {"time/total_timesteps", "time/iterations", "time/time_elapsed", "time/episodes", "global_step"}
SHOWN_PARAMETERS = (*KEY_HYPERPARAMETERS, "learning_rate", "total_timesteps", "num_envs", "seed")


def open_tail(path: Path | str, read_scalars: bool = True) -> RunTail:
    """A tail of whatever `path` is: a spintui run, a TensorBoard run or a Spinning Up run."""
    return ForeignTail(path) if is_foreign(path) else RunTail(path, read_scalars=read_scalars)


def source_manifest(path: Path | str) -> dict:
    """A run's manifest (run.json); for a TensorBoard or Spinning Up run, one that says it trains."""
    return {"kind": "train"} if is_foreign(path) else read_manifest(path)


@dataclass
class ForeignTail(RunTail):
    """A TensorBoard or Spinning Up run, presented as a `RunTail` to the views."""

    log: ForeignLog = field(init=False, repr=False)
    _changed: float = field(default=0.0, init=False, repr=False)  # the newest mtime of its files

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.log = ForeignLog(self.run_dir)
        self.manifest = self.log.info()

    def status(self, now: float | None = None) -> str:
        return self.log.status(now, self._changed or None)

    def poll(self, keep: bool = True) -> bool:
        """Read what the log's files gained; True if anything changed."""
        update = self.log.poll()
        changed, self._changed = self._changed, self.log.last_change()
        if not update and changed == self._changed:
            return False
        if update.reset:
            self.scalars.clear()
            self.records = 0
            self.derived.clear()
        for name, (steps, times, values) in update.series.items():
            series = self.scalars.get(name)
            if series is None:
                series = self.scalars[name] = Series(name)
            series.append(steps, times, values)
            self.records += len(values)
        self.episodes = self._first(RETURN_TAGS) or Series("EpRet")
        self.test_episodes = self._first(TEST_RETURN_TAGS) or Series("TestEpRet")
        self.manifest = self.log.info()
        self.version += 1
        if update:
            self.data_version += 1
        return True

    def keep_parsed(self) -> None:
        """Nothing is cached for these logs."""

    def _first(self, names) -> Series | None:
        return next((self.scalars[n] for n in names if n in self.scalars), None)

    def loss_names(self) -> list[str]:
        """Losses first, then every other series but returns, steps/s, counters and return statistics."""
        names = [n for n in self.scalars if tag_role(n) in ("loss", "other")
                 and n not in NOT_A_LOSS and n not in COUNTERS]
        return sorted(names, key=lambda n: 0 if tag_role(n) == "loss" else 1)

    def loss_series(self, name: str) -> Series | None:
        return self.scalars.get(name)

    def steps_per_sec(self) -> Series | None:
        """The log's steps/s series; else steps/s between consecutive points of its returns."""
        rate = self._first(RATE_TAGS)
        if rate is not None:
            return rate
        source = self.episodes if len(self.episodes) else next(iter(self.scalars.values()), None)
        if source is None or len(source) < 2:
            return None
        cached = self.derived.get("rate")
        if cached is None or cached[0] != (id(source), len(source)):
            dt, ds = np.diff(source.times), np.diff(source.steps)
            ok = (dt > 0) & (ds > 0)
            derived = Series("steps/s (from points)")
            derived.append(source.steps[1:][ok], source.times[1:][ok], ds[ok] / dt[ok])
            self.derived["rate"] = cached = ((id(source), len(source)), derived)
        return cached[1]

    def phase_times(self) -> list[tuple[str, float]]:
        return []

    def hyperparameters(self) -> list[tuple[str, object]]:
        params = self.log.params
        return [(k, params[k]) for k in SHOWN_PARAMETERS if k in params and isinstance(params[k], (int, float, str))]
