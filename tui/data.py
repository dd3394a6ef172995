"""The dashboard's data layer: tail runs, keep their series, smooth and decimate them for plotting.

Nothing here imports Textual, so it is unit-tested on its own and could feed another front end.
A `RunTail` owns one `RunReader` and grows numpy-backed `Series` as records arrive; `PlotLine`s
are what a plot widget draws: at most about two points per pixel column, already smoothed.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from spintui.profiles.run_reader import RunReader
from spintui.profiles.store import effective_status

# --------------------------------------------------------------------------------------------------
# Series


class Series:
    """Parallel growable arrays: env step, wall time and value; appends are amortised O(1)."""

    __slots__ = ("name", "_steps", "_times", "_values", "_n", "_ema")

    def __init__(self, name: str):
        self.name = name
        self._steps = np.empty(0, dtype=np.float64)
        self._times = np.empty(0, dtype=np.float64)
        self._values = np.empty(0, dtype=np.float64)
        self._n = 0
        self._ema: tuple[float, int, EmaState, np.ndarray] | None = None  # weight, n, state, smoothed

    def __len__(self) -> int:
        return self._n

    def append(self, steps, times, values) -> None:
        steps = np.asarray(steps, dtype=np.float64).ravel()
        times = np.asarray(times, dtype=np.float64).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        k = len(values)
        if k == 0:
            return
        need = self._n + k
        if need > len(self._values):
            cap = max(need, 2 * len(self._values), 256)
            for attr in ("_steps", "_times", "_values"):
                old = getattr(self, attr)
                new = np.empty(cap, dtype=np.float64)
                new[: self._n] = old[: self._n]
                setattr(self, attr, new)
        self._steps[self._n:need] = steps
        self._times[self._n:need] = times
        self._values[self._n:need] = values
        self._n = need

    @property
    def steps(self) -> np.ndarray:
        return self._steps[: self._n]

    @property
    def times(self) -> np.ndarray:
        return self._times[: self._n]

    @property
    def values(self) -> np.ndarray:
        return self._values[: self._n]

    def last(self) -> float | None:
        return float(self._values[self._n - 1]) if self._n else None

    def smoothed(self, weight: float) -> np.ndarray:
        """Debiased EMA of the values; extends the cached result incrementally as points arrive."""
        if weight <= 0.0:
            return self.values
        cached = self._ema
        if cached is not None and cached[0] == weight and cached[1] <= self._n:
            _, done, state, out = cached
            if done == self._n:
                return out
            more, state = ema_debiased(self.values[done:], weight, state)
            out = np.concatenate([out, more])
        else:
            out, state = ema_debiased(self.values, weight)
        self._ema = (weight, self._n, state, out)
        return out


# --------------------------------------------------------------------------------------------------
# Smoothing and decimation


@dataclass
class EmaState:
    """Where a debiased EMA left off: the biased accumulator and how many finite points it has seen."""

    last: float = 0.0
    count: int = 0


def ema_debiased(values: np.ndarray, weight: float, state: EmaState | None = None) -> tuple[np.ndarray, EmaState]:
    """TensorBoard's smoothing: s_t = w*s_{t-1} + (1-w)*x_t from s_0 = 0, shown as s_t / (1 - w^t).

    Non-finite values are skipped (the previous smoothed value is repeated), as TensorBoard does.
    Vectorised in chunks short enough that w**-k cannot overflow, so a million points take
    milliseconds; passing the returned state continues the same curve over newly arrived points.
    """
    values = np.asarray(values, dtype=np.float64)
    state = EmaState() if state is None else EmaState(state.last, state.count)
    out = np.empty_like(values)
    if not 0.0 <= weight < 1.0:
        raise ValueError("smoothing weight must be in [0, 1)")
    if weight == 0.0 or len(values) == 0:
        finite = np.isfinite(values)
        out[:] = values
        if finite.any():
            state.last = float(values[finite][-1])
            state.count += int(finite.sum())
        return out, state
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0)
    chunk = max(1, min(4096, int(250.0 / -math.log10(weight))))
    # Powers w**k and w**-k for k = 0..chunk, looked up instead of recomputed per chunk.
    pw = np.power(weight, np.arange(chunk + 1, dtype=np.float64))
    inv_pw = 1.0 / pw
    for lo in range(0, len(x), chunk):
        xs = x[lo:lo + chunk]
        fs = finite[lo:lo + chunk]
        # Skipped points do not advance time: exponent k counts finite points only.
        k = np.cumsum(fs)  # 0..m over the chunk
        acc = np.cumsum(xs * inv_pw[k])  # non-finite points contribute 0
        wk = pw[k]
        biased = wk * state.last + (1.0 - weight) * wk * acc
        counts = state.count + k
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            debiased = biased / -np.expm1(counts * math.log(weight))
        # Before the first finite point there is nothing to show.
        out[lo:lo + chunk] = np.where(counts > 0, debiased, np.nan)
        if len(k) and k[-1] > 0:
            state.last = float(biased[-1])
            state.count = int(counts[-1])
    return out, state


def decimate_minmax(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's minimum and maximum (in x order) plus the first and last point.

    With `buckets` about the plot's pixel width, the drawn curve is the same as drawing every point:
    a column shows the range of values that fall in it. Points are split into equal-count buckets.
    """
    n = len(y)
    if buckets <= 0 or n <= 2 * buckets + 2:
        return x, y
    size = n // buckets
    body = buckets * size
    yb = y[:body].reshape(buckets, size)
    if not np.isfinite(yb).all():
        yb = np.where(np.isnan(yb), np.nanmean(yb[np.isfinite(yb)]) if np.isfinite(yb).any() else 0.0, yb)
    base = np.arange(buckets) * size
    lo = yb.argmin(axis=1) + base
    hi = yb.argmax(axis=1) + base
    idx = np.concatenate([[0], np.minimum(lo, hi), np.maximum(lo, hi), np.arange(body, n), [n - 1]])
    idx = np.unique(idx)  # sorted, and a bucket whose min and max coincide keeps one point
    return x[idx], y[idx]


def symlog(y: np.ndarray) -> np.ndarray:
    """Log scale that also shows zero and negative values (losses often cross zero)."""
    return np.sign(y) * np.log10(1.0 + np.abs(y))


def symlog_inverse(v: float) -> float:
    return math.copysign(10.0 ** abs(v) - 1.0, v)


# --------------------------------------------------------------------------------------------------
# What panels show


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
    records: int = 0
    version: int = 0  # bumped whenever anything new arrived (a heartbeat too)
    data_version: int = 0  # bumped only when records or scalars arrived: what plots depend on
    rate_points: Series = field(default_factory=lambda: Series("progress"))  # (step, time) seen in heartbeats

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.reader = RunReader(self.run_dir)

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
        return effective_status(self.manifest, now) if self.manifest else "unknown"

    def poll(self) -> bool:
        """Read what is new; returns True if anything changed."""
        update = self.reader.poll()
        if not update:
            return False
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
        if update.records or update.scalars:
            self.data_version += 1
        return True

    def _take_records(self, records: list[dict]) -> None:
        ep_step, ep_time, ep_ret = [], [], []
        test_step, test_time, test_ret = [], [], []
        for rec in records:
            kind = rec.get("kind")
            self.records += 1
            if kind == "episode":
                point = _numbers(rec.get("step"), rec.get("time"), rec.get("ret"))
                if point is None:
                    continue  # a damaged or foreign record: skip it, as the store skips torn lines
                steps, times, rets = (test_step, test_time, test_ret) if rec.get("test") else (ep_step, ep_time, ep_ret)
                steps.append(point[0]); times.append(point[1]); rets.append(point[2])
            elif kind == "epoch":
                point = _numbers(rec.get("step"), rec.get("time"), 0.0)
                stats = rec.get("stats")
                if point is None or not isinstance(stats, dict):
                    continue
                step, t, _ = point
                for key, value in stats.items():
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    series = self.epoch_stats.get(key)
                    if series is None:
                        series = self.epoch_stats[key] = Series(key)
                    series.append([step], [t], [value])
            elif kind == "kernel":
                self.kernels.append(rec)
            elif kind == "event":
                self.events.append(rec)
                del self.events[:-50]
            elif kind == "gpu":
                self.last_gpu = rec
        self.episodes.append(ep_step, ep_time, ep_ret)
        self.test_episodes.append(test_step, test_time, test_ret)

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
        cached = getattr(self, "_derived_rate", None)
        if cached is None or cached[0] != n:
            steps, times = self.episodes.steps, self.episodes.times
            dt = np.diff(times)
            ok = dt > 0
            derived = Series("steps/s (from episodes)")
            derived.append(steps[1:][ok], times[1:][ok], np.diff(steps)[ok] / dt[ok])
            self._derived_rate = cached = (n, derived)
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
        cfg = self.manifest.get("config") or {}
        return [(k, cfg[k]) for k in KEY_HYPERPARAMETERS if k in cfg and cfg[k] is not None]


class Preload:
    """Start reading runs in a thread now (before the UI toolkit is even imported); `tails()` joins.

    A late attach to a big finished run then overlaps its first read with interpreter start-up.
    """

    def __init__(self, run_dirs):
        self._run_dirs = [Path(p) for p in run_dirs]
        self._tails: list[RunTail] | None = None
        self._thread = threading.Thread(target=self._load, name="spintui-preload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            tails = [RunTail(p) for p in self._run_dirs]
            for tail in tails:
                tail.poll()
            self._tails = tails
        except Exception:  # the data worker starts over and reports the problem itself
            self._tails = None

    def tails(self) -> list[RunTail] | None:
        self._thread.join()
        return self._tails


# --------------------------------------------------------------------------------------------------
# Plot preparation


@dataclass(frozen=True)
class ViewSettings:
    """The user's view choices; the UI replaces the whole object, the data worker reads it."""

    smoothing: float = 0.6
    x_axis: str = "step"  # or "time"
    log_y: bool = False
    paused: bool = False
    loss_index: int = 0
    plot_width: int = 120  # pixel columns of the widest plot (2 per terminal cell for braille)


SMOOTHING_STEPS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999)


@dataclass
class PlotLine:
    label: str
    x: np.ndarray
    y: np.ndarray
    colour: int  # index into the palette
    emphasis: str = "normal"  # "dim" for raw points under a smoothed curve, "bold" for test


@dataclass
class PlotData:
    title: str
    lines: list[PlotLine]
    x_label: str
    log_y: bool
    empty_reason: str = ""
    legend: list[tuple[str, int]] = field(default_factory=list)


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
    return PlotData("Return", lines, x_label(settings), settings.log_y, reason, legend)


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
