"""Numpy-backed series of a run and the maths on them: debiased EMA smoothing, min/max decimation,
symlog, and the statistics of several seeds' curves on one x grid.

Nothing here knows about runs or widgets; `RunTail` (tui/data.py) grows `Series` as records arrive
and the plot builders (tui/plot_data.py, tui/run_groups.py) smooth, decimate and aggregate them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    def drop_after(self, step: float) -> None:
        """Forget the points past `step` (what a resumed run's previous trainer logged past its checkpoint)."""
        keep = self.steps <= step
        if keep.all():
            return
        for attr in ("_steps", "_times", "_values"):  # new arrays: adopted ones may be read-only
            setattr(self, attr, getattr(self, attr)[: self._n][keep].copy())
        self._n = int(keep.sum())
        self._ema = None

    def adopt(self, steps: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        """Fill an empty series with these float64 arrays as they are, without a copy (they may be
        read-only: the next append moves the data into arrays of the series' own)."""
        if self._n or not (len(steps) == len(times) == len(values)):
            raise ValueError("adopt fills an empty series with arrays of one length")
        self._steps, self._times, self._values = steps, times, values
        self._n = len(values)

    def smoothing_kept(self) -> tuple[float, EmaState, np.ndarray] | None:
        """(weight, state, smoothed values) of the last `smoothed` call, if it covers every point."""
        cached = self._ema
        if cached is None or cached[1] != self._n:
            return None
        return cached[0], cached[2], cached[3]

    def keep_smoothing(self, weight: float, state: EmaState, smoothed: np.ndarray) -> None:
        """What `smoothing_kept` gave for these same points: `smoothed(weight)` then costs nothing."""
        if len(smoothed) != self._n:
            raise ValueError("smoothed values for another number of points")
        self._ema = (weight, self._n, EmaState(state.last, state.count), smoothed)

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


@dataclass
class SeedStats:
    """Several curves on one grid: at each x, how many cover it and their mean, std, min and max."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # population std (ddof 0): 0 where one curve covers x
    low: np.ndarray  # min
    high: np.ndarray  # max
    count: np.ndarray


def clean_curve(x, y) -> tuple[np.ndarray, np.ndarray] | None:
    """The curve's finite points in increasing x (np.interp needs them so; a resumed run may step
    back); None when no point is finite. Arrays that need no change come back as they are."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all():
        x, y = x[ok], y[ok]
    if not len(x):
        return None
    if np.any(x[1:] < x[:-1]):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    return x, y


def across_seeds(curves: list[tuple[np.ndarray, np.ndarray]], points: int, clean: bool = True) -> SeedStats | None:
    """The statistics of `curves` (x, y pairs, one per seed) on a grid of `points` evenly spaced x.

    The rule: the grid runs from the smallest first x of any curve to the largest last x. A curve
    counts at a grid x only inside its own x range (from its first to its last point), where it is
    linearly interpolated between its points; outside that range it is absent, never extrapolated.
    So where only the furthest seed has got to, the mean is that seed's curve and the spread is 0;
    where no curve covers x (curves that do not overlap) every statistic is NaN.
    Non-finite points are dropped first; a curve without any finite point is left out
    (`clean=False`: the curves come from clean_curve already).
    """
    kept = [c for c in (clean_curve(x, y) for x, y in curves) if c is not None] if clean else list(curves)
    if not kept:
        return None
    lo = min(float(x[0]) for x, _ in kept)
    hi = max(float(x[-1]) for x, _ in kept)
    grid = np.linspace(lo, hi, max(2, points)) if hi > lo else np.array([lo])
    values = np.full((len(kept), len(grid)), np.nan)
    for row, (x, y) in zip(values, kept):
        inside = (grid >= x[0]) & (grid <= x[-1])
        row[inside] = np.interp(grid[inside], x, y)
    present = np.isfinite(values)
    count = present.sum(axis=0)
    total = np.where(present, values, 0.0).sum(axis=0)
    mean = total / np.maximum(count, 1)
    spread = np.where(present, values - mean, 0.0)
    std = np.sqrt((spread ** 2).sum(axis=0) / np.maximum(count, 1))
    low = np.where(present, values, np.inf).min(axis=0)
    high = np.where(present, values, -np.inf).max(axis=0)
    gap = count == 0  # between curves that do not overlap: nothing to show
    if gap.any():
        mean, std, low, high = (np.where(gap, np.nan, a) for a in (mean, std, low, high))
    return SeedStats(grid, mean, std, low, high, count)


def symlog(y: np.ndarray) -> np.ndarray:
    """Log scale that also shows zero and negative values (losses often cross zero)."""
    return np.sign(y) * np.log10(1.0 + np.abs(y))


def symlog_inverse(v: float) -> float:
    return math.copysign(10.0 ** abs(v) - 1.0, v)
