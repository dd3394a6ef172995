"""The dashboard's data layer on its own: smoothing, decimation, incremental tailing, plot raster."""

import math
import sys

import numpy as np
import pytest

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.tui.data import RunTail, phase_name
from spintui.tui.plot import render_plot
from spintui.tui.plot_data import PlotData, PlotLine, ViewSettings, loss_plot, return_plot
from spintui.tui.series import Series, decimate_minmax, ema_debiased, symlog, symlog_inverse


def tensorboard_ema(values, weight):
    """TensorBoard's smoothing loop, written out as its scalar dashboard does it."""
    out, last, count = [], 0.0, 0
    for x in values:
        if not math.isfinite(x):
            out.append(out[-1] if out else float("nan"))
            continue
        last = last * weight + (1 - weight) * x
        count += 1
        out.append(last / (1 - weight ** count))
    return np.array(out)


def test_textual_is_not_imported_by_the_data_layer():
    import subprocess

    code = ("import sys, spintui.tui.series, spintui.tui.data, spintui.tui.plot_data, spintui.tui.plot, "
            "spintui.profiles.gpu; print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.6, 0.9, 0.99, 0.999])
def test_ema_matches_tensorboard_formula(weight):
    rng = np.random.default_rng(0)
    values = rng.normal(size=9000).cumsum()
    got, _ = ema_debiased(values, weight)
    np.testing.assert_allclose(got, tensorboard_ema(values, weight), rtol=1e-9, atol=1e-9)
    # The first point is shown unbiased: it equals the raw value, not (1 - w) * x.
    assert got[0] == pytest.approx(values[0])


def test_ema_skips_non_finite_values_and_continues_incrementally():
    rng = np.random.default_rng(1)
    values = rng.normal(size=3000)
    values[[5, 6, 700, 2999]] = np.nan
    values[100] = np.inf
    full, _ = ema_debiased(values, 0.95)
    np.testing.assert_allclose(full, tensorboard_ema(values, 0.95), rtol=1e-9, atol=1e-12)
    a, state = ema_debiased(values[:1234], 0.95)
    b, _ = ema_debiased(values[1234:], 0.95, state)
    np.testing.assert_allclose(np.concatenate([a, b]), full, rtol=1e-12, atol=1e-12)


def test_series_smoothing_cache_extends_with_new_points():
    s = Series("LossQ")
    rng = np.random.default_rng(2)
    vals = rng.normal(size=500)
    s.append(np.arange(300), np.arange(300), vals[:300])
    first = s.smoothed(0.9).copy()
    s.append(np.arange(300, 500), np.arange(300, 500), vals[300:])
    np.testing.assert_allclose(s.smoothed(0.9), tensorboard_ema(vals, 0.9), rtol=1e-10)
    np.testing.assert_allclose(s.smoothed(0.9)[:300], first)
    np.testing.assert_allclose(s.smoothed(0.6), tensorboard_ema(vals, 0.6), rtol=1e-10)  # new weight: recomputed
    assert s.smoothed(0.0) is not None and np.array_equal(s.smoothed(0.0), vals)


def test_decimation_keeps_every_buckets_min_and_max():
    rng = np.random.default_rng(3)
    n, buckets = 100_003, 120
    x = np.arange(n, dtype=float)
    y = rng.normal(size=n)
    y[54_321] = 50.0  # a spike must survive
    y[7] = -60.0
    dx, dy = decimate_minmax(x, y, buckets)
    assert len(dx) <= 2 * buckets + 2 + n % buckets + 1
    assert np.all(np.diff(dx) > 0), "points stay in x order"
    assert dy.max() == 50.0 and dy.min() == -60.0
    assert dx[0] == 0 and dx[-1] == n - 1
    size = n // buckets
    kept = set(dx.astype(int).tolist())
    for b in range(buckets):
        chunk = y[b * size:(b + 1) * size]
        assert b * size + int(chunk.argmax()) in kept
        assert b * size + int(chunk.argmin()) in kept


def test_decimation_leaves_short_series_alone():
    x = np.arange(100.0)
    y = np.sin(x)
    dx, dy = decimate_minmax(x, y, 120)
    assert dx is x and dy is y


def test_symlog_round_trips():
    for v in (-1234.5, -1.0, 0.0, 0.25, 99.0):
        assert symlog_inverse(float(symlog(np.array([v]))[0])) == pytest.approx(v)


def write_training(run, start, stop):
    for step in range(start, stop):
        run.scalars({"LossQ": 1.0 / (step + 1), "LossPi": -step, "TimeUpdate": 0.004, "StepsPerSec": 100.0}, step)
        if step % 10 == 9:
            run.episode(step, float(step), 10)
    run.flush()


def test_run_tail_reads_only_new_records(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0,
                    config={"lr": 0.001, "gamma": 0.99, "epochs": 2, "steps_per_epoch": 100})
    run = RunWriter(rd, heartbeat=False)
    tail = RunTail(rd)
    assert tail.poll()  # the manifest
    write_training(run, 0, 50)
    assert tail.poll()
    assert len(tail.scalars["LossQ"]) == 50 and len(tail.episodes) == 5
    assert not tail.poll(), "nothing new, nothing changed"
    write_training(run, 50, 120)
    run.epoch(1, 100, {"AverageEpRet": 42.0, "AverageTestEpRet": 43.0, "LossQ": 0.5, "Alpha": 0.2, "Time": 1.0})
    run.episode(100, 43.0, 10, test=True)
    run.flush()
    assert tail.poll()
    assert len(tail.scalars["LossQ"]) == 120, "the second poll added exactly the new points"
    np.testing.assert_array_equal(tail.scalars["LossPi"].values, -np.arange(120.0))
    assert len(tail.episodes) == 12 and len(tail.test_episodes) == 1
    # Panels: losses first, then other statistics; returns, counters and timings are not losses.
    assert tail.loss_names() == ["LossQ", "LossPi", "Alpha"]
    assert tail.phase_times() == [("Update", 0.004)]
    assert tail.current_steps_per_sec() == 100.0
    assert tail.total_steps() == 200
    assert ("lr", 0.001) in tail.hyperparameters()
    run.close()


def test_a_tail_of_returns_only_never_reads_the_scalars(tmp_path, monkeypatch):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    write_training(run, 0, 50)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    tail = RunTail(rd, read_scalars=False)
    assert tail.poll()
    assert len(tail.episodes) == 5 and tail.scalars == {}
    assert not any(path.endswith("scalars.bin") for path in opened), opened
    run.close()


def test_phase_names():
    assert phase_name("TimeUpdate") == "Update"
    assert phase_name("time/env") == "env"
    assert phase_name("Time") is None  # Spinning Up's total elapsed time
    assert phase_name("LossQ") is None


def test_plots_follow_view_settings(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    write_training(run, 0, 2000)
    tail = RunTail(rd)
    tail.poll()
    plot = return_plot([tail], ViewSettings(smoothing=0.9, plot_width=60))
    labels = [ln.label for ln in plot.lines]
    assert labels == ["return", "smoothed"]
    raw, smooth = plot.lines
    assert not np.array_equal(raw.y, smooth.y)
    assert return_plot([tail], ViewSettings(smoothing=0.0)).lines[-1].label == "smoothed"
    loss, names, name = loss_plot([tail], ViewSettings(smoothing=0.0, plot_width=60, loss_index=1))
    assert name == "LossPi" and names == ["LossQ", "LossPi"]
    assert len(loss.lines[0].x) <= 2 * 60 + 2 + 2000 % 60 + 1, "decimated to the plot width"
    assert loss.lines[0].y.min() == -1999.0, "decimation keeps the extreme"
    timed = loss_plot([tail], ViewSettings(smoothing=0.0, x_axis="time"))[0]
    assert timed.lines[0].x.max() < 600, "wall-time axis is seconds since the run started"
    run.close()


def test_render_plot_draws_a_rising_line_corner_to_corner():
    x = np.arange(100.0)
    data = PlotData("t", [PlotLine("a", x, x, 0)], "steps", False)
    rows = render_plot(data, 40, 10)
    assert len(rows) == 10
    assert all(sum(len(s.text) for s in row) == 40 for row in rows)
    text = ["".join(s.text for s in row) for row in rows]
    plot_area = [r[8:] for r in text[:-1]]
    # Rising line: ink in the top row's right end and the bottom row's left end, and in every row.
    assert plot_area[0].rstrip()[-1] != " " and plot_area[0][0] == " "
    assert plot_area[-1][0] != " " and plot_area[-1].rstrip() == plot_area[-1][:len(plot_area[-1].rstrip())]
    assert all(r.strip() for r in plot_area)
    assert text[-1].strip().endswith("99")


def test_render_plot_without_data_says_why():
    rows = render_plot(PlotData("t", [], "steps", False, "no losses logged yet"), 40, 5)
    assert "no losses logged yet" in "".join(s.text for s in rows[2])


def test_batch_json_parse_falls_back_to_skipping_damaged_lines():
    from spintui.profiles.records import iter_jsonl

    good = b'{"kind":"episode","ret":1.0}\n{"kind":"episode","ret":2.0}\n'
    assert [r["ret"] for r in iter_jsonl(good)] == [1.0, 2.0]
    damaged = b'{"kind":"episode","ret":1.0}\n{"kind":"epi\n\n[1,2]\n{"kind":"episode","ret":3.0}\n'
    assert [r["ret"] for r in iter_jsonl(damaged)] == [1.0, 3.0]
    assert list(iter_jsonl(b"")) == [] and list(iter_jsonl(b"\n\n")) == []


def test_damaged_or_foreign_records_are_skipped(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac")
    run = RunWriter(rd, heartbeat=False)
    run.log("episode", step="many", ret=1.0)
    run.log("episode", step=5, ret=None)
    run.log("epoch", epoch=1, step=10, stats="not a dict")
    run.episode(7, 2.5, 10)
    run.flush()
    tail = RunTail(rd)
    assert tail.poll()
    assert tail.episodes.values.tolist() == [2.5] and tail.epoch_stats == {}
    version = tail.data_version
    run.set_progress(step=8)
    run._write_manifest()  # a heartbeat alone does not make plots stale
    assert tail.poll() and tail.data_version == version
    run.close()


def test_steps_per_sec_falls_back_to_episode_timing(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="ppo")
    run = RunWriter(rd, heartbeat=False)
    for i in range(5):
        run.episode(step=200 * (i + 1), ret=1.0, length=200, time=1000.0 + 2.0 * i)  # 200 steps per 2 s
    run.flush()
    tail = RunTail(rd)
    tail.poll()
    assert tail.steps_per_sec().values.tolist() == [100.0] * 4
    run.close()
