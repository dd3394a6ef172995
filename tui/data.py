"""The dashboard's data: tail runs through the run store's reader into series, one `RunTail` per run.

Nothing here imports Textual, so it is unit-tested on its own and could feed another front end.
A `RunTail` owns one `RunReader` and grows numpy-backed `Series` (tui/series.py) as records arrive;
`Preload` starts that reading before the UI toolkit is imported.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spintui.algos.config import block_sparse_text
from spintui.profiles.gpu_history import GpuHistory
from spintui.profiles.run_reader import RunReader
from spintui.profiles.store import effective_status
from spintui.tui import tail_cache
from spintui.tui.series import Series

# --------------------------------------------------------------------------------------------------
# Record names


def _numbers(*values) -> tuple[float, ...] | None:
    """The values as floats, or None if any is missing or not a number."""
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


TIMING_RE = re.compile(r"^(?:time|phase)[/_ .-]?(.+)$", re.IGNORECASE)
STEPS_PER_SEC_NAMES = ("StepsPerSec", "steps_per_sec", "steps/s", "sps", "SPS")
RETURN_STATS = ("AverageEpRet", "StdEpRet", "MaxEpRet", "MinEpRet", "AverageTestEpRet", "StdTestEpRet",
                "MaxTestEpRet", "MinTestEpRet", "EpRet", "TestEpRet")
NOT_A_LOSS = {"Epoch", "TotalEnvInteracts", "Time", *STEPS_PER_SEC_NAMES, *RETURN_STATS}
KEY_HYPERPARAMETERS = ("lr", "pi_lr", "q_lr", "vf_lr", "alpha", "gamma", "batch_size", "polyak", "clip_ratio",
                       "steps_per_epoch", "hidden_sizes", "target_kl", "lam", "device")


def phase_name(name: str) -> str | None:
    """`TimeUpdate` -> `Update`, `time/env` -> `env`; Spinning Up's `Time` (total elapsed) is not a phase."""
    if name == "Time":
        return None
    m = TIMING_RE.match(name)
    if not m or not m.group(1):
        return None
    return m.group(1)


# --------------------------------------------------------------------------------------------------
# Tailing


@dataclass
class RunTail:
    """One run being watched: its manifest and every series the panels need, updated by `poll()`."""

    run_dir: Path
    reader: RunReader = field(init=False)
    manifest: dict = field(default_factory=dict)
    episodes: Series = field(default_factory=lambda: Series("EpRet"))
    test_episodes: Series = field(default_factory=lambda: Series("TestEpRet"))
    scalars: dict[str, Series] = field(default_factory=dict)
    epoch_stats: dict[str, Series] = field(default_factory=dict)
    kernels: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    last_gpu: dict | None = None
    gpu_history: GpuHistory = field(default_factory=GpuHistory)  # the producer's own 1 Hz GPU samples
    traces: list[dict] = field(default_factory=list)  # `trace` records of --trace captures (trace_table.py)
    records: int = 0
    version: int = 0  # bumped whenever anything new arrived (a heartbeat too)
    data_version: int = 0  # bumped only when records or scalars arrived: what plots depend on
    rate_points: Series = field(default_factory=lambda: Series("progress"))  # (step, time) seen in heartbeats
    resumes: list[dict] = field(default_factory=list)  # where the run was resumed: {"step", "epoch", "time"}
    read_scalars: bool = True  # False: never read scalars.bin (a view of returns and progress only)
    cached_offset: int = field(default=-1, init=False)  # how far into metrics.jsonl tail_cache holds; -1 unasked
    _status_memo: tuple | None = field(default=None, init=False, repr=False)  # (now, manifest, status)
    _cached_smoothing: bool = field(default=False, init=False, repr=False)  # the entry holds smoothed returns
    derived: dict = field(default_factory=dict, init=False, repr=False)  # what views computed from it, by name

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.reader = RunReader(self.run_dir, scalars=self.read_scalars)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def start_time(self) -> float:
        return float(self.manifest.get("start_time") or 0.0)

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind") or "train")

    def status(self, now: float | None = None) -> str:
        """effective_status of the manifest; asked again at the same `now`, the answer it gave (a
        frame asks for every run's status several times, and each asks the OS about a live writer)."""
        if not self.manifest:
            return "unknown"
        if now is None:
            return effective_status(self.manifest)
        memo = self._status_memo
        if memo is not None and memo[0] == now and memo[1] is self.manifest:
            return memo[2]
        status = effective_status(self.manifest, now)
        self._status_memo = (now, self.manifest, status)
        return status

    def poll(self, keep: bool = True) -> bool:
        """Read what is new; returns True if anything changed. A large log is parsed once per
        machine: what was parsed is kept in the viewer's cache (tui/tail_cache.py) unless `keep` is
        False (then call `keep_parsed` later)."""
        restored = False
        if self.cached_offset < 0:
            restored = tail_cache.load(self)
            self.cached_offset = self.reader.metrics_offset
            self._cached_smoothing = self.episodes.smoothing_kept() is not None
        update = self.reader.poll()
        if not update and not restored:
            return False
        for rec in update.resumes:  # before this poll's points, which the reader has already sifted
            self._drop_after(rec["step"])
        if update.manifest is not None:
            self.manifest = update.manifest
            progress = self.manifest.get("progress") or {}
            if progress.get("step") is not None:
                self.rate_points.append([progress["step"]], [self.manifest.get("heartbeat") or time.time()], [0.0])
        for name, part in update.scalars.items():
            series = self.scalars.get(name)
            if series is None:
                series = self.scalars[name] = Series(name)
            series.append(part.steps, part.times, part.values)
            self.records += len(part.values)
        self._take_records(update.records)
        self.version += 1
        if update.records or update.scalars or restored:
            self.data_version += 1
        if keep:
            self.keep_parsed()
        return True

    def _drop_after(self, step: float) -> None:
        """A resume at `step`: what the previous trainer logged past it (in earlier polls) is superseded."""
        for series in (self.episodes, self.test_episodes, self.rate_points, *self.scalars.values(),
                       *self.epoch_stats.values()):
            series.drop_after(step)
        self.resumes = [r for r in self.resumes if r["step"] <= step]

    def keep_parsed(self) -> None:
        """Update the cache entry when CACHE_MIN_BYTES more of the log were parsed since it was
        written, or when the training returns were smoothed since (for a large log)."""
        grown = self.reader.metrics_offset - self.cached_offset >= tail_cache.CACHE_MIN_BYTES
        smoothed = not self._cached_smoothing and self.episodes.smoothing_kept() is not None and \
            self.reader.metrics_offset >= tail_cache.CACHE_MIN_BYTES
        if (grown or smoothed) and tail_cache.save(self):
            self.cached_offset = self.reader.metrics_offset
            self._cached_smoothing = self.episodes.smoothing_kept() is not None

    def epoch_series(self, name: str) -> Series:
        series = self.epoch_stats.get(name)
        if series is None:
            series = self.epoch_stats[name] = Series(name)
        return series

    def _take_records(self, records: list[dict]) -> None:
        self.records += len(records)
        episodes = [rec for rec in records if rec.get("kind") == "episode"]
        if episodes:
            self._take_episodes(episodes)
        if len(episodes) == len(records):
            return
        for rec in records:
            kind = rec.get("kind")
            if kind == "epoch":
                point = _numbers(rec.get("step"), rec.get("time"), 0.0)
                stats = rec.get("stats")
                if point is None or not isinstance(stats, dict):
                    continue
                step, t, _ = point
                for key, value in stats.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        self.epoch_series(key).append([step], [t], [value])
            elif kind == "kernel":
                self.kernels.append(rec)
            elif kind == "event":
                self.events.append(rec)
                del self.events[:-50]
            elif kind == "gpu":
                self.last_gpu = rec
                self.gpu_history.add(rec)
            elif kind == "trace":
                self.traces.append(rec)
                del self.traces[:-5]
            elif kind == "resume":
                self.resumes.append(rec)

    def _take_episodes(self, episodes: list[dict]) -> None:
        """Episode records into the training and test series, a column at a time (an experiment's
        runs may hold millions). One whose step, time or return is not a number is skipped, as the
        store skips a torn line."""
        try:
            columns = [np.array([rec.get(k) for rec in episodes], dtype=np.float64) for k in ("step", "time", "ret")]
        except (TypeError, ValueError):  # a list or a word where a number belongs: record by record
            points = [_numbers(rec.get("step"), rec.get("time"), rec.get("ret")) for rec in episodes]
            episodes = [rec for rec, point in zip(episodes, points) if point is not None]
            columns = list(np.array([p for p in points if p is not None], dtype=np.float64).reshape(-1, 3).T)
        test = np.array([bool(rec.get("test")) for rec in episodes], dtype=bool)
        step, when, ret = columns
        ok = ~(np.isnan(step) | np.isnan(when) | np.isnan(ret))  # null (or missing) became NaN
        train = ok & ~test
        self.episodes.append(step[train], when[train], ret[train])
        test &= ok
        self.test_episodes.append(step[test], when[test], ret[test])

    # -- what the panels show -------------------------------------------------------------------
    def return_series(self) -> tuple[Series | None, Series | None]:
        """(training returns, test returns): per episode where logged, else the epoch averages."""
        train = self.episodes if len(self.episodes) else self.epoch_stats.get("AverageEpRet")
        test = self.test_episodes if len(self.test_episodes) else self.epoch_stats.get("AverageTestEpRet")
        return train, test

    def loss_names(self) -> list[str]:
        """Every per-update scalar and epoch statistic that is not a return, a counter or a timing."""
        names = [n for n in self.scalars if n not in NOT_A_LOSS and phase_name(n) is None]
        names += [n for n in self.epoch_stats
                  if n not in NOT_A_LOSS and phase_name(n) is None and n not in self.scalars]
        # Losses first, in the order they were logged; then other statistics.
        return sorted(names, key=lambda n: (0 if "loss" in n.lower() else 1))

    def loss_series(self, name: str) -> Series | None:
        return self.scalars.get(name) or self.epoch_stats.get(name)

    def steps_per_sec(self) -> Series | None:
        """The run's own steps/s series; else one derived from consecutive training episodes."""
        for name in STEPS_PER_SEC_NAMES:
            if name in self.scalars:
                return self.scalars[name]
        for name in STEPS_PER_SEC_NAMES:
            if name in self.epoch_stats:
                return self.epoch_stats[name]
        n = len(self.episodes)
        if n < 2:
            return None
        cached = self.derived.get("rate")
        if cached is None or cached[0] != n:
            steps, times = self.episodes.steps, self.episodes.times
            dt = np.diff(times)
            ok = dt > 0
            derived = Series("steps/s (from episodes)")
            derived.append(steps[1:][ok], times[1:][ok], np.diff(steps)[ok] / dt[ok])
            self.derived["rate"] = cached = (n, derived)
        return cached[1]

    def current_steps_per_sec(self) -> float | None:
        progress = self.manifest.get("progress") or {}
        if isinstance(progress.get("steps_per_sec"), (int, float)):
            return float(progress["steps_per_sec"])
        series = self.steps_per_sec()
        if series is not None and len(series):
            return series.last()
        pts = self.rate_points
        if len(pts) >= 2:
            ds = pts.steps[-1] - pts.steps[0]
            dt = pts.times[-1] - pts.times[0]
            if dt > 0 and self.status() == "running":
                return float(ds / dt)
        return None

    def phase_times(self) -> list[tuple[str, float]]:
        """(phase, last value) for every timing series: scalars first, else epoch statistics."""
        out: dict[str, float] = {}
        for source in (self.epoch_stats, self.scalars):
            for name, series in source.items():
                phase = phase_name(name)
                if phase is not None and len(series):
                    out[phase] = float(series.last())
        return list(out.items())

    def current_step(self) -> int:
        progress = self.manifest.get("progress") or {}
        if progress.get("step") is not None:
            return int(progress["step"])
        best = 0
        for s in (self.episodes, *self.scalars.values()):
            if len(s):
                best = max(best, int(s.steps[-1]))
        return best

    def total_steps(self) -> int | None:
        progress = self.manifest.get("progress") or {}
        total = progress.get("total_steps")
        if total:
            return int(total)
        cfg = self.manifest.get("config") or {}
        if cfg.get("steps"):
            return int(cfg["steps"])
        if cfg.get("epochs") and cfg.get("steps_per_epoch"):
            return int(cfg["epochs"]) * int(cfg["steps_per_epoch"])
        return None

    def elapsed(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        end = self.manifest.get("end_time")
        if self.status(now) != "running":
            end = end or self.manifest.get("heartbeat")
        return max(0.0, float(end or now) - self.start_time) if self.start_time else 0.0

    def eta(self, now: float | None = None) -> float | None:
        total = self.total_steps()
        rate = self.current_steps_per_sec()
        if not total or not rate or rate <= 0 or self.status(now) != "running":
            return None
        return max(0.0, (total - self.current_step()) / rate)

    def hyperparameters(self) -> list[tuple[str, object]]:
        """(name, value) pairs for the header; a block-sparse run adds ("", "block-sparse d0.5 b32")."""
        cfg = self.manifest.get("config") or {}
        out = [(k, cfg[k]) for k in KEY_HYPERPARAMETERS if k in cfg and cfg[k] is not None]
        density = cfg.get("block_density")
        if isinstance(density, (int, float)) and density < 1:
            out.append(("", block_sparse_text(density, cfg.get("block_size"))))
        return out


class Preload:
    """Start reading runs in a thread now (before the UI toolkit is even imported); `tails()` joins.

    A late attach to a big finished run then overlaps its first read with interpreter start-up.
    With `smoothing` (the dashboard's EMA weight) it also smooths each run's training returns,
    which the first frame draws (a series keeps its smoothed values).
    """

    def __init__(self, run_dirs, scalars: bool = True, smoothing: float = 0.0):
        self._run_dirs = [Path(p) for p in run_dirs]
        self._scalars = scalars
        self._smoothing = smoothing
        self._tails: list[RunTail] | None = None
        self._ready: list[RunTail] = []  # the runs read so far, in the order they were read
        self._thread = threading.Thread(target=self._load, name="spintui-preload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from spintui.tui.foreign_tail import open_tail  # it builds on RunTail: imported once this module is

        try:
            tails = [open_tail(p, read_scalars=self._scalars) for p in self._run_dirs]
            for tail in tails:
                tail.poll(keep=False)
                train, _ = tail.return_series()
                if train is not None and self._smoothing > 0:
                    train.smoothed(self._smoothing)
                tail.keep_parsed()  # once, with the smoothed returns
                self._ready.append(tail)  # this thread is done with it
            self._tails = tails
        except Exception:  # the data worker starts over and reports the problem itself
            self._tails = None

    def tails(self) -> list[RunTail] | None:
        self._thread.join()
        return self._tails

    def loaded(self) -> tuple[list[RunTail], bool]:
        """Without waiting: the runs read so far (no longer touched by the reading thread), and
        whether the reading is over."""
        done = not self._thread.is_alive()
        return list(self._ready), done


def poll_tails(tails: list[RunTail]) -> str:
    """Read what is new in every run; a vanished or unreadable run gives a line to show, not a crash."""
    error = ""
    for tail in tails:
        try:
            tail.poll()
        except Exception as exc:
            error = f"{tail.name}: {type(exc).__name__}: {exc}"
    return error
