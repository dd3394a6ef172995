"""Seeds aggregated on one x grid (series.across_seeds) and the band the plot draws behind a mean line."""

import numpy as np
import pytest

from spintui.tui.plot import render_plot
from spintui.tui.plot_data import PlotBand, PlotData, PlotLine
from spintui.tui.series import across_seeds


def test_mean_std_min_max_of_hand_made_seeds_on_a_shared_grid():
    a = (np.array([0.0, 10.0]), np.array([0.0, 10.0]))
    b = (np.array([0.0, 10.0]), np.array([10.0, 30.0]))
    c = (np.array([0.0, 5.0]), np.array([2.0, 2.0]))  # a seed that has only got to x = 5
    stats = across_seeds([a, b, c], points=3)
    assert stats.x.tolist() == [0.0, 5.0, 10.0]
    assert stats.count.tolist() == [3, 3, 2], "c does not count beyond its last x"
    assert stats.mean.tolist() == pytest.approx([4.0, 9.0, 20.0])
    assert stats.std.tolist() == pytest.approx([np.sqrt(56 / 3), np.sqrt(186 / 3), 10.0])  # population std
    assert stats.low.tolist() == [0.0, 2.0, 10.0] and stats.high.tolist() == [10.0, 20.0, 30.0]


def test_grid_spans_every_seed_and_one_seed_alone_has_no_spread():
    late = (np.array([4.0, 8.0]), np.array([1.0, 5.0]))
    early = (np.array([0.0, 6.0]), np.array([3.0, 3.0]))
    stats = across_seeds([late, early], points=5)
    assert stats.x.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert stats.count.tolist() == [1, 1, 2, 2, 1]
    assert stats.mean.tolist() == pytest.approx([3.0, 3.0, 2.0, 3.0, 5.0])
    assert stats.std.tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0, 0.0])


def test_unsorted_non_finite_and_non_overlapping_curves():
    shuffled = (np.array([2.0, 0.0, 1.0]), np.array([4.0, 0.0, np.nan]))  # resumed: steps go back; a NaN
    stats = across_seeds([shuffled], points=3)
    assert stats.mean.tolist() == pytest.approx([0.0, 2.0, 4.0])
    apart = across_seeds([(np.array([0.0, 1.0]), np.array([1.0, 1.0])),
                          (np.array([3.0, 4.0]), np.array([2.0, 2.0]))], points=5)
    assert apart.count.tolist() == [1, 1, 0, 1, 1] and np.isnan(apart.mean[2]) and np.isnan(apart.std[2])
    assert across_seeds([(np.array([np.nan]), np.array([1.0]))], points=4) is None
    point = across_seeds([(np.array([3.0]), np.array([7.0])), (np.array([3.0]), np.array([9.0]))], points=10)
    assert point.x.tolist() == [3.0] and point.mean.tolist() == [8.0] and point.std.tolist() == [1.0]


def test_the_band_is_drawn_dim_behind_the_line():
    x = np.linspace(0.0, 10.0, 50)
    data = PlotData("Return", [PlotLine("mean", x, x, 3)], "steps", False,
                    bands=[PlotBand("mean", x, x - 3.0, x + 3.0, 3)])
    rows = render_plot(data, 60, 16)
    segments = [seg for row in rows for seg in row[2:]]  # past the y labels and the axis
    band = [seg for seg in segments if seg.style is not None and seg.style.dim and seg.text.strip()]
    line = [seg for seg in segments if seg.style is not None and not seg.style.dim and seg.text.strip()]
    assert band and line
    assert {seg.style.color for seg in band} == {seg.style.color for seg in line}, "the group's own colour"
    assert "⣿" not in "".join(seg.text for seg in band), "a lighter texture, never solid cells"
    without = render_plot(PlotData("Return", [PlotLine("mean", x, x, 3)], "steps", False), 60, 16)
    assert all(not (seg.style and seg.style.dim) for row in without for seg in row[2:] if seg.text.strip())
    # The y range takes in the band: its widest values are on the plot.
    assert rows[0][0].text.strip() and float(rows[0][0].text) > 10.0
