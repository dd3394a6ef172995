"""`spintui watch EXPERIMENT`: runs grouped by configuration, their seeds as a mean over a band, the
groups' table; the frame builder without Textual, the dashboard through Textual's pilot, and the
table printed without a terminal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from spintui.profiles.experiments import experiment_run_dirs
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.tui.data import RunTail, poll_tails
from spintui.tui.frames import ExperimentFrame, ExperimentInfo, experiment_frame
from spintui.tui.plot_data import ViewSettings
from spintui.tui.run_groups import group_return_plot, group_rows, group_runs, row_cells

RAW = ViewSettings(smoothing=0.0, plot_width=50)  # a grid of 100 points, returns as logged


def polled(run_dirs) -> list[RunTail]:
    tails = [RunTail(p, read_scalars=False) for p in run_dirs]
    assert poll_tails(tails) == ""
    return tails


def test_runs_are_grouped_by_configuration_all_but_the_seed(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path)
    groups = group_runs(polled(experiment_run_dirs(exp)))
    assert [g.label for g in groups] == ["gamma=0.98", "gamma=0.99"]
    assert [[t.name for t in g.tails] for g in groups] == [
        ["gamma0.98_s0", "gamma0.98_s1", "gamma0.98_s2"], ["gamma0.99_s0", "gamma0.99_s1", "gamma0.99_s2"]]

    def run(name, **config):
        return create_run(tmp_path / "loose", kind="train", name=name, algo="sac", env="Pendulum-v1",
                          config={"gamma": 0.99, "lr": 0.001, "hidden_sizes": [64, 64], **config})
    loose = [run("a", seed=0), run("b", seed=1, lr=0.0003), run("c", seed=2, hidden_sizes=[32]), run("d", seed=3)]
    groups = group_runs(polled(loose))
    assert [g.label for g in groups] == ["lr=0.001, hidden_sizes=64,64", "lr=0.0003, hidden_sizes=64,64",
                                         "lr=0.001, hidden_sizes=32"]
    assert [len(g.tails) for g in groups] == [2, 1, 1]
    assert [g.label for g in group_runs(polled(loose[:1] + loose[3:]))] == ["sac Pendulum-v1"]


def test_each_group_is_the_mean_of_its_seeds_over_a_band(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path)  # return -1000 + step / 10 + 100 * seed - 200 * gamma index
    groups = group_runs(polled(experiment_run_dirs(exp)))
    plot, layers = group_return_plot(groups, RAW)
    assert [ln.label for ln in plot.lines] == [b.label for b in plot.bands] == ["gamma=0.98", "gamma=0.99"]
    assert plot.legend == [("gamma=0.98", 0), ("gamma=0.99", 1)]
    for i, (line, band) in enumerate(zip(plot.lines, plot.bands)):
        assert line.x[0] == 100 and line.x[-1] == 2000 and len(line.x) == 100
        np.testing.assert_allclose(line.y, -1000 + line.x / 10 + 100 - 200 * i)  # seeds 0, 1, 2: mean 100
        std = 100 * np.std([0, 1, 2])
        np.testing.assert_allclose(band.low, line.y - std)
        np.testing.assert_allclose(band.high, line.y + std)
    minmax = group_return_plot(groups, replace(RAW, band="minmax"))[0].bands[0]
    np.testing.assert_allclose(minmax.high - minmax.low, 200.0)
    smoothed = group_return_plot(groups, replace(RAW, smoothing=0.6))[0].lines[0]
    assert smoothed.y[-1] < -1000 + 2000 / 10 + 100, "smoothing lags a rising curve"
    logged = group_return_plot(groups, replace(RAW, log_y=True))[0].lines[0]
    assert logged.y[0] == pytest.approx(-np.log10(1 + 890.0))


def test_a_group_whose_runs_brought_nothing_new_keeps_its_layers(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path)
    tails = polled(experiment_run_dirs(exp))
    plot, layers = group_return_plot(group_runs(tails), RAW)
    run = RunWriter(exp / "gamma0.99_s1", heartbeat=False)
    run.episode(2100, 0.0, 100)
    run.flush()
    assert poll_tails(tails) == ""
    again, _ = group_return_plot(group_runs(tails), RAW, layers)
    assert again.lines[0] is plot.lines[0] and again.bands[0] is plot.bands[0]
    assert again.lines[1] is not plot.lines[1] and again.lines[1].x[-1] == 2100
    run.close()


def test_the_table_gives_final_test_returns_runs_by_status_and_steps_per_second(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path, statuses={"gamma0.99_s1": "running", "gamma0.99_s2": "queued"})
    tails = polled(experiment_run_dirs(exp))
    first, second = group_rows(group_runs(tails), time.time())
    assert first["final_mean"] == pytest.approx(-190.0)  # -200, -190, -180
    assert first["final_std"] == pytest.approx(np.std([-200, -190, -180]))
    assert (first["finished"], first["running"], first["queued"], first["crashed"], first["steps_per_sec"]) == (
        3, 0, 0, 0, 110.0)
    assert row_cells(first) == ["gamma=0.98", "3", "-190.0 ± 8.2", "3", "0", "0", "0", "0", "110"]
    assert (second["finished"], second["running"], second["queued"], second["final_n"]) == (1, 1, 1, 2)
    assert row_cells(second)[2] == "-245.0 ± 5.0 (2 of 3)" and second["steps_per_sec"] == 105.0


def test_the_experiment_frame_is_pure_and_reused_while_nothing_changes(tmp_path, recorded_experiment):
    code = "import sys, spintui.tui.frames, spintui.tui.run_groups; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    exp = recorded_experiment(tmp_path)
    tails = polled(experiment_run_dirs(exp))
    now = tails[0].start_time + 5
    info = ExperimentInfo("exp", "finished")
    frame = experiment_frame(tails, RAW, now, experiment=info)
    assert isinstance(frame, ExperimentFrame) and (frame.title, frame.status) == ("experiment exp", "finished")
    assert [g["group"] for g in frame.groups] == ["gamma=0.98", "gamma=0.99"] and len(frame.header) == 6
    assert frame.trainer == (None, None), "nothing runs: no producer to sample"
    assert experiment_frame(tails, RAW, now + 1, previous=frame, experiment=info) is frame
    banded = experiment_frame(tails, replace(RAW, band="minmax"), now, previous=frame, experiment=info)
    assert banded is not frame and banded.returns is not frame.returns
    other = experiment_frame(tails, RAW, now, previous=frame, experiment=ExperimentInfo("exp", "failed"))
    assert other.status == "failed" and other.returns is frame.returns
    assert experiment_frame(tails, RAW, now).title == "6 runs"


# ------------------------------------------------------------------------------------------------
# The dashboard


def test_the_dashboard_shows_groups_with_a_band_and_their_table(tmp_path, recorded_experiment, screen_text,
                                                                wait_for):
    from spintui.tui.app import dashboard_class
    from spintui.tui.experiment_dashboard import ExperimentDashboard
    from spintui.tui.screens import HelpScreen
    from spintui.tui.widgets import PlotView

    exp = recorded_experiment(tmp_path, statuses={"gamma0.99_s2": "queued"})
    runs = experiment_run_dirs(exp)
    assert dashboard_class(runs) is ExperimentDashboard and dashboard_class(runs[:1], exp) is ExperimentDashboard

    async def go():
        app = ExperimentDashboard(runs, experiment=exp, refresh_s=0.1, telemetry=False)
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.query_one("#returns", PlotView)
            await wait_for(pilot, lambda: view.data is not None and len(view.data.bands) == 2)
            await pilot.pause(0.2)
            text = screen_text(app)
            for fragment in ("experiment exp", "stopped", "5 finished · 1 queued", "(6 runs, 2 groups)",
                             "Return: mean of seeds, band ± std (b)", "gamma=0.98", "gamma=0.99", "Groups",
                             "final test return", "-190.0 ± 8.2", "-245.0 ± 5.0 (2 of 3)", "b band: ± std"):
                assert fragment in text, fragment
            assert any("\u2800" < ch <= "\u28ff" for ch in text), "braille curves drawn"
            await pilot.press("b")
            await wait_for(pilot, lambda: "band min–max" in screen_text(app))
            assert app.settings.band == "minmax" and view.data.bands[0].high[0] - view.data.bands[0].low[0] == 200
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            assert "band across seeds: mean ± std / min–max" in screen_text(app)
            await pilot.press("escape", "q")
            await pilot.pause()
        return app.outcome
    assert asyncio.run(go()) == "closed"


def test_while_runs_are_read_the_dashboard_shows_those_read_so_far(tmp_path, recorded_experiment, screen_text,
                                                                   wait_for):
    from spintui.tui.experiment_dashboard import ExperimentDashboard

    exp = recorded_experiment(tmp_path)
    runs = experiment_run_dirs(exp)

    class SlowPreload:  # reads the first three runs, then the rest once `go` is set
        def __init__(self):
            self.tails_list = polled(runs)
            self.go = threading.Event()

        def loaded(self):
            return (self.tails_list, True) if self.go.is_set() else (self.tails_list[:3], False)

        def tails(self):
            self.go.wait(timeout=30)
            return self.tails_list

    preload = SlowPreload()

    async def go():
        app = ExperimentDashboard(runs, experiment=exp, preload=preload, refresh_s=0.1, telemetry=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: "reading runs: 3 of 6" in screen_text(app))
            assert "(3 runs, 1 group)" in screen_text(app), "one configuration so far: it has no varying key"
            preload.go.set()
            await wait_for(pilot, lambda: "gamma=0.99" in screen_text(app) and "finished" in screen_text(app))
            assert "reading runs" not in screen_text(app) and "(6 runs, 2 groups)" in screen_text(app)
    asyncio.run(go())


def test_several_runs_fit_80x24_grouped(tmp_path, recorded_run, screen_text, wait_for):
    from spintui.tui.app import dashboard_class
    from spintui.tui.widgets import PlotView

    runs = [recorded_run(tmp_path, name=f"seed{s}", seed=s, steps=2000) for s in (0, 1)]

    async def go():
        app = dashboard_class(runs)(runs, refresh_s=0.1, telemetry=False)
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one("#returns", PlotView)
            await wait_for(pilot, lambda: view.data is not None and view.data.lines)
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "2 runs" in text and "2 finished" in text and "sac Pendulum-v1" in text
            lines = text.splitlines()
            assert len(lines) == 24 and all(len(ln) <= 80 for ln in lines)
    asyncio.run(go())


# ------------------------------------------------------------------------------------------------
# Without a terminal


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "spintui", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env={**os.environ, "NO_COLOR": "1"}, **kw)


def test_headless_watch_prints_the_table_once_for_a_finished_experiment(tmp_path, recorded_experiment):
    recorded_experiment(tmp_path)
    out, err = cli("watch", "--runs-dir", str(tmp_path), "exp").communicate(timeout=60)
    assert err == ""
    assert out.count("experiment exp: finished") == 1 and out.count("gamma=0.98") == 1, out
    assert "-190.0 ± 8.2" in out and "-240.0 ± 8.2" in out


def test_headless_watch_prints_the_table_again_when_it_changes_and_ends_with_the_runs(tmp_path,
                                                                                      recorded_experiment):
    exp = recorded_experiment(tmp_path, seeds=(0, 1), statuses={"gamma0.99_s1": "running"})
    live = RunWriter(exp / "gamma0.99_s1", heartbeat=False)  # this test's process is the trainer now
    live.update_manifest()
    proc = cli("watch", "--runs-dir", str(tmp_path), "exp")
    out = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while "experiment exp: running" not in "".join(out) and time.monotonic() < deadline:
            live.update_manifest()  # the heartbeat, however slowly the viewer starts
            time.sleep(0.2)
        time.sleep(1.5)  # a poll or two with nothing new: no second table
        assert proc.poll() is None, "a run is still running"
        live.set_progress(test_return=-240.0)
        live.close("finished")
        proc.wait(timeout=60)
        reader.join(timeout=10)
        out, err = "".join(out), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    tables = out.split("experiment exp: ")
    assert [t.split()[0] for t in tables[1:]] == ["running", "finished"], out
    # group, seeds, final test return, finished, running, queued, stopped, crashed, steps/s
    assert table_row(tables[1], "gamma=0.99") == ["gamma=0.99", "2", "-245.0 ± 5.0", "1", "1", "0", "0", "0", "105"]
    assert table_row(tables[2], "gamma=0.99")[3:5] == ["2", "0"] and err == ""


def table_row(table: str, group: str) -> list[str]:
    line = next(ln for ln in table.splitlines() if f" {group} " in ln)
    return [cell.strip() for cell in line.strip("│ ").split("│")]
