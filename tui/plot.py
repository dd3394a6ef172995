"""A braille line plot rasterised with numpy into Rich segments (no Textual import).

Why not plotext: it rebuilds its figure from every point and paints each cell with its own colour
codes (~6 ms and tens of KB per frame even after decimation). Here a frame of a decimated plot is a
few hundred microseconds of numpy, each row is a handful of same-style runs, so a refresh of a
60x16 plot writes about 3 KB to the terminal.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from rich.segment import Segment
from rich.style import Style

from spintui.tui.plot_data import PlotBand, PlotData, format_duration, format_number
from spintui.tui.series import symlog_inverse

# Distinguishable in 256-colour terminals; Rich maps them down when the terminal has fewer.
PALETTE = ("#5fafff", "#ffaf00", "#87d75f", "#ff5f87", "#af87ff", "#5fd7d7", "#d7d75f", "#ff8700")

_DOTS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)
_GLYPHS = np.array([" "] + [chr(0x2800 + i) for i in range(1, 256)])
AXIS_STYLE = Style(dim=True)
Y_LABEL_WIDTH = 7


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def line_style(index: int, emphasis: str) -> Style:
    return Style(color=colour(index), dim=emphasis == "dim", bold=emphasis == "bold")


def band_style(index: int) -> Style:
    return Style(color=colour(index), dim=True)


def _finite_band(band: PlotBand) -> PlotBand:
    keep = np.isfinite(band.x) & np.isfinite(band.low) & np.isfinite(band.high)
    return band if keep.all() else PlotBand(band.label, band.x[keep], band.low[keep], band.high[keep], band.colour)


def _raster(px: np.ndarray, py: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Boolean (height_px, width_px) image of the polyline through (px, py), y downwards."""
    lo = np.full(width_px, np.inf)
    hi = np.full(width_px, -np.inf)
    if len(px) == 1 or px.max() - px.min() < 1e-9:
        c = np.clip(np.rint(px).astype(np.int64), 0, width_px - 1)
        np.minimum.at(lo, c, py)
        np.maximum.at(hi, c, py)
    else:
        # The line's height at every column it spans (sparse data), then each column's own points
        # (dense data: a column shows the range of values inside it).
        cols = np.arange(max(0, math.ceil(px.min())), min(width_px - 1, math.floor(px.max())) + 1)
        if len(cols):
            yi = np.interp(cols, px, py)
            lo[cols] = yi
            hi[cols] = yi
        c = np.clip(np.rint(px).astype(np.int64), 0, width_px - 1)
        np.minimum.at(lo, c, py)
        np.maximum.at(hi, c, py)
        # Join neighbouring columns so steep segments stay connected.
        valid = np.isfinite(lo)
        prev_lo = np.concatenate([[np.inf], lo[:-1]])
        prev_hi = np.concatenate([[-np.inf], hi[:-1]])
        both = valid & np.isfinite(prev_lo)
        lo = np.where(both, np.minimum(lo, prev_hi), lo)
        hi = np.where(both, np.maximum(hi, prev_lo), hi)
    lo_r = np.clip(np.floor(lo + 0.5), -1, height_px)
    hi_r = np.clip(np.floor(hi + 0.5), -1, height_px)
    rows = np.arange(height_px)[:, None]
    return (rows >= lo_r[None, :]) & (rows <= hi_r[None, :])


def _fill(px: np.ndarray, top: np.ndarray, bottom: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Boolean (height_px, width_px) image of the area between two curves over the same px (y downwards)."""
    if len(px) == 1 or px.max() - px.min() < 1e-9:
        cols = np.clip(np.rint(px[:1]).astype(np.int64), 0, width_px - 1)
        t, b = top[:1], bottom[:1]
    else:
        cols = np.arange(max(0, math.ceil(px.min())), min(width_px - 1, math.floor(px.max())) + 1)
        t, b = np.interp(cols, px, top), np.interp(cols, px, bottom)
    image = np.zeros((height_px, width_px), dtype=bool)
    if len(cols):
        t_r = np.clip(np.floor(np.minimum(t, b) + 0.5), 0, height_px)
        b_r = np.clip(np.floor(np.maximum(t, b) + 0.5), -1, height_px - 1)
        rows = np.arange(height_px)[:, None]
        image[:, cols] = (rows >= t_r[None, :]) & (rows <= b_r[None, :])
    return image


@functools.lru_cache(maxsize=4)
def _shade(height_px: int, width_px: int) -> np.ndarray:
    """Every other dot, as a checkerboard: a band reads as a lighter texture than a solid line."""
    return (np.add.outer(np.arange(height_px), np.arange(width_px)) % 2) == 0


def _codes(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The braille code of each cell: a bit per dot, summed over the 4x2 dots as eight strided slices."""
    codes = np.zeros((rows, cols), dtype=np.int64)
    for r in range(4):
        for c in range(2):
            codes += image[r::4, c::2] * int(_DOTS[r, c])
    return codes


def _x_label(v: float, time_axis: bool) -> str:
    return format_duration(v) if time_axis else format_number(v)


def _y_label(v: float, log_y: bool) -> str:
    return format_number(symlog_inverse(v) if log_y else v)


def render_plot(data: PlotData | None, width: int, height: int) -> list[list[Segment]]:
    """Rows of segments exactly `width` cells wide, `height` rows."""
    blank = [[Segment(" " * width)] for _ in range(height)]
    if width <= 0 or height <= 0:
        return []
    lines = [ln for ln in (data.lines if data else []) if len(ln.x)]
    bands = [_finite_band(b) for b in (data.bands if data else [])]
    bands = [b for b in bands if len(b.x)]
    plot_w = width - Y_LABEL_WIDTH - 1
    plot_h = height - 1
    if not (lines or bands) or plot_w < 4 or plot_h < 2:
        message = (data.empty_reason if data else "") or ("waiting for data" if not lines else "too small")
        row = height // 2
        blank[row] = [Segment(message[:width].center(width), AXIS_STYLE)]
        return blank
    xs = [ln.x for ln in lines] + [b.x for b in bands]
    ys = [ln.y for ln in lines] + [b.low for b in bands] + [b.high for b in bands]
    xmin = min(float(x.min()) for x in xs)
    xmax = max(float(x.max()) for x in xs)
    ymin = min(float(y.min()) for y in ys)
    ymax = max(float(y.max()) for y in ys)
    if xmax <= xmin:
        xmin, xmax = xmin - 1.0, xmax + 1.0
    if ymax <= ymin:
        pad = abs(ymin) * 0.1 or 1.0
        ymin, ymax = ymin - pad, ymax + pad
    else:
        pad = (ymax - ymin) * 0.05
        ymin, ymax = ymin - pad, ymax + pad
    width_px, height_px = 2 * plot_w, 4 * plot_h

    codes = np.zeros((plot_h, plot_w), dtype=np.int64)
    owner = np.full((plot_h, plot_w), -1, dtype=np.int64)
    for i, ln in enumerate(lines):
        px = (ln.x - xmin) / (xmax - xmin) * (width_px - 1)
        py = (ymax - ln.y) / (ymax - ymin) * (height_px - 1)
        c = _codes(_raster(px, py, width_px, height_px), plot_h, plot_w)
        codes |= c
        owner[c > 0] = i  # later lines (smoothed, test) are drawn over earlier ones
    styles = [line_style(ln.colour, ln.emphasis) for ln in lines]
    if bands:  # behind the lines: a cell a line passes through shows the line only
        shade = _shade(height_px, width_px)
        band_codes = np.zeros_like(codes)
        band_owner = np.full_like(owner, -1)
        for j, band in enumerate(bands):
            px = (band.x - xmin) / (xmax - xmin) * (width_px - 1)
            top = (ymax - band.high) / (ymax - ymin) * (height_px - 1)
            bottom = (ymax - band.low) / (ymax - ymin) * (height_px - 1)
            c = _codes(_fill(px, top, bottom, width_px, height_px) & shade, plot_h, plot_w)
            band_codes |= c
            band_owner[c > 0] = j
        shown = (codes == 0) & (band_codes > 0)
        codes = np.where(shown, band_codes, codes)
        owner = np.where(shown, len(lines) + band_owner, owner)
        styles += [band_style(b.colour) for b in bands]

    y_ticks = {0: ymax, plot_h - 1: ymin}
    if plot_h >= 5:
        y_ticks[(plot_h - 1) // 2] = ymax - (ymax - ymin) * ((plot_h - 1) // 2) / (plot_h - 1)
    rows: list[list[Segment]] = []
    glyph_rows = _GLYPHS[codes]
    for r in range(plot_h):
        label = _y_label(y_ticks[r], data.log_y) if r in y_ticks else ""
        segs = [Segment(label[:Y_LABEL_WIDTH].rjust(Y_LABEL_WIDTH), AXIS_STYLE), Segment("│", AXIS_STYLE)]
        own = owner[r]
        text = glyph_rows[r]
        start = 0
        change = np.flatnonzero(own[1:] != own[:-1]) + 1
        for end in [*change.tolist(), plot_w]:
            o = int(own[start])
            segs.append(Segment("".join(text[start:end].tolist()), styles[o] if o >= 0 else None))
            start = end
        rows.append(segs)
    time_axis = data.x_label == "time"
    left = _x_label(xmin, time_axis)
    right = _x_label(xmax, time_axis)
    mid = _x_label((xmin + xmax) / 2, time_axis)
    axis = [" "] * plot_w
    for pos, text in ((0, left), (plot_w - len(right), right), ((plot_w - len(mid)) // 2, mid)):
        if pos >= 0 and all(ch == " " for ch in axis[max(0, pos - 1):pos + len(text) + 1]):
            axis[pos:pos + len(text)] = list(text)
    unit = data.x_label
    head = unit[:Y_LABEL_WIDTH].rjust(Y_LABEL_WIDTH) + "└"
    rows.append([Segment(head, AXIS_STYLE), Segment("".join(axis)[:plot_w], AXIS_STYLE)])
    return rows
