"""`spintui watch` and `spintui plot` on TensorBoard and Spinning Up runs, alone and beside spintui
runs: the frames, the dashboards through Textual's pilot, the headless output, the figure."""

from __future__ import annotations

import asyncio
import shutil
import sys

import numpy as np
from foreign_log_writers import age, cleanrl_points, cleanrl_writer, spinningup_dir

from spintui.options import build
from spintui.profiles.foreign_logs import LIVE_S, find_foreign
from spintui.tui.data import RunTail, poll_tails
from spintui.tui.foreign_tail import ForeignTail, open_tail
from spintui.tui.frames import experiment_frame
from spintui.tui.plot_command import PlotOptions, plot_lines
from spintui.tui.plot_data import ViewSettings


def test_a_spintui_run_and_an_sb3_run_overlay_as_two_groups(tmp_path, recorded_run, sb3_run):
    ours = recorded_run(tmp_path / "runs")
    tails = [open_tail(ours, read_scalars=False), open_tail(sb3_run, read_scalars=False)]
    assert type(tails[0]) is RunTail and type(tails[1]) is ForeignTail
    assert poll_tails(tails) == ""
    frame = experiment_frame(tails, ViewSettings(smoothing=0.0, plot_width=60), 0.0)
    assert [g["group"] for g in frame.groups] == ["sac Pendulum-v1", "PPO"]
    assert [ln.label for ln in frame.returns.lines] == ["sac Pendulum-v1", "PPO"]
    sb3_line = frame.returns.lines[1]
    assert sb3_line.x[0] == 128 and sb3_line.x[-1] == 2048 and np.all(sb3_line.y > 5)
    assert frame.groups[1]["final_mean"] == tails[1].scalars["eval/mean_reward"].last()
    assert [row["algo"] for row in frame.header] == ["sac", "PPO"]


def test_the_dashboard_overlays_a_spintui_run_and_an_sb3_run(tmp_path, recorded_run, sb3_run, screen_text, wait_for):
    from spintui.tui.app import dashboard_class
    from spintui.tui.experiment_dashboard import ExperimentDashboard
    from spintui.tui.widgets import PlotView

    runs = [recorded_run(tmp_path / "runs"), shutil.copytree(sb3_run, tmp_path / "sb3" / "PPO_1")]
    age(tmp_path / "sb3", LIVE_S + 1)
    assert dashboard_class(runs) is ExperimentDashboard

    async def go():
        app = dashboard_class(runs)(runs, refresh_s=0.1, telemetry=False)
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.query_one("#returns", PlotView)
            await wait_for(pilot, lambda: view.data is not None and len(view.data.lines) == 2)
            await pilot.pause(0.2)
            text = screen_text(app)
            for fragment in ("2 runs", "2 finished", "(2 runs, 2 groups)", "sac Pendulum-v1", "PPO", "Groups"):
                assert fragment in text, fragment
            assert any("\u2800" < ch <= "\u28ff" for ch in text), "braille curves drawn"
            await pilot.press("q")
            await pilot.pause()
        return app.outcome
    assert asyncio.run(go()) == "closed"


def test_the_training_dashboard_follows_a_growing_cleanrl_run(tmp_path, screen_text, wait_for):
    from spintui.tui.app import dashboard_class
    from spintui.tui.train_dashboard import TrainDashboard
    from spintui.tui.widgets import PlotView

    writer = cleanrl_writer(tmp_path)
    cleanrl_points(writer, range(100, 2100, 100))
    (run_dir,) = find_foreign(tmp_path)
    assert dashboard_class([run_dir]) is TrainDashboard

    async def go():
        app = TrainDashboard([run_dir], refresh_s=0.1, telemetry=False)
        async with app.run_test(size=(120, 40)) as pilot:
            returns = app.query_one("#returns", PlotView)
            await wait_for(pilot, lambda: app.frame is not None and returns.data is not None and returns.data.lines)
            await pilot.pause(0.2)
            text = screen_text(app)
            for fragment in ("Loss: losses/value_loss (1/5, j/k)", "Timing  1020 steps/s", "ppo", "CartPole-v1",
                             "running"):
                assert fragment in text, fragment
            await pilot.press("j")
            await wait_for(pilot, lambda: "Loss: losses/policy_loss (2/5, j/k)" in screen_text(app))
            assert returns.data.lines[-1].x[-1] == 2000
            cleanrl_points(writer, range(2100, 2600, 100))
            await wait_for(pilot, lambda: returns.data.lines[-1].x[-1] == 2500)
            await pilot.press("q")
            await pilot.pause()
        return app.outcome
    assert asyncio.run(go()) == "closed"
    writer.close()


def test_headless_watch_of_a_tensorboard_run_says_what_it_found(tmp_path, sb3_run, spintui):
    run_dir = shutil.copytree(sb3_run, tmp_path / "logs" / "PPO_1")
    age(run_dir, LIVE_S + 1)
    out = spintui("watch", str(run_dir))
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("TensorBoard run PPO_1 in ") and lines[0].endswith("finished (14 series, 191 points)")
    assert lines[1] == ("Return rollout/ep_rew_mean · Test eval/mean_reward · steps/s time/fps · "
                        "Loss train/entropy_loss (+10 more, j/k)")
    assert lines[2].startswith("step 2,048  return ") and " test " in lines[2] and "steps/s" in lines[2]
    assert "train/value_loss" in out.stdout and "│ rollout/ep_rew_mean" in out.stdout
    assert lines[-1].startswith("finished: 2,048 steps, return ") and lines[-1].endswith(str(run_dir))

    shutil.copytree(sb3_run, tmp_path / "logs" / "PPO_2")
    spinningup_dir(tmp_path / "logs", epochs=3)
    age(tmp_path / "logs", LIVE_S + 1)
    out = spintui("watch", str(tmp_path / "logs"))
    assert out.returncode == 0, out.stderr
    assert "3 runs: finished" in out.stdout and "│ PPO " in out.stdout and "│ ppo-pendulum " in out.stdout
    row = next(ln for ln in out.stdout.splitlines() if "│ PPO " in ln)
    assert row.split("│")[2].strip() == "2"  # PPO_1 and PPO_2: seeds of one configuration


def test_a_directory_of_none_of_the_kinds_is_one_line(tmp_path, spintui_here):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    spintui_here("watch", str(tmp_path / "empty")).assert_one_line_error(
        1, "is not a spintui run, an experiment, a TensorBoard log directory or a Spinning Up output directory",
        "events.out.tfevents.*")
    spintui_here("plot", str(tmp_path / "empty"), "-o", str(tmp_path / "f.png")).assert_one_line_error(
        1, "names no runs, experiments, TensorBoard log directories or Spinning Up output directories")


def test_without_tensorboard_installed_a_tensorboard_run_is_one_line(tmp_path, sb3_run, spintui_here,
                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto.event_pb2", None)  # import fails
    spintui_here("watch", str(sb3_run)).assert_one_line_error(
        2, f"reading the TensorBoard run {sb3_run} needs the tensorboard package: "
           "pip install 'spintui[tensorboard]'")
    spintui_here("plot", str(sb3_run), "-o", str(tmp_path / "f.png")).assert_one_line_error(
        2, "needs the tensorboard package")


def test_plot_overlays_a_spintui_run_a_tensorboard_run_and_a_spinningup_run(tmp_path, recorded_run, sb3_run):
    ours = recorded_run(tmp_path / "runs")
    writer = cleanrl_writer(tmp_path / "cleanrl")
    cleanrl_points(writer, range(100, 600, 100))
    writer.close()
    spin = spinningup_dir(tmp_path / "spinup", epochs=3)
    opts = build(PlotOptions, {"sources": [str(ours), str(sb3_run), str(tmp_path / "cleanrl"), str(spin)],
                               "runs_dir": str(tmp_path / "runs")})
    lines = plot_lines(opts)
    assert [ln.label for ln in lines] == ["sac Pendulum-v1", "PPO", "CartPole-v1__ppo", "ppo-pendulum"]
    sb3, cleanrl, spinup = lines[1:]
    assert sb3.x.tolist() == [512, 1024, 1536, 2048]  # eval/mean_reward: the test return comes first
    assert cleanrl.x.tolist() == [100, 200, 300, 400, 500] and cleanrl.mean.tolist() == [12.0, 13.0, 14.0, 15.0, 16.0]
    np.testing.assert_allclose(spinup.mean, [-500, -460, -420])
    losses = plot_lines(build(PlotOptions, {"sources": [str(sb3_run)], "value": "train/value_loss"}))
    assert losses[0].x.tolist() == list(range(256, 2049, 128))
