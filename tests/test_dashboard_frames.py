"""The frame builders on their own, without Textual: what a dashboard frame shows for polled runs."""

import subprocess
import sys
from dataclasses import replace

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.tui.data import RunTail, poll_tails
from spintui.tui.frames import ProfileFrame, TrainFrame, profile_frame, train_frame
from spintui.tui.plot_data import ViewSettings


def test_textual_is_not_imported_by_the_frame_builders():
    code = "import sys, spintui.tui.frames; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def polled(*run_dirs) -> list[RunTail]:
    tails = [RunTail(rd) for rd in run_dirs]
    assert poll_tails(tails) == ""
    return tails


def test_train_frame_shows_plots_and_headers_of_a_recorded_run(tmp_path, recorded_run):
    rd = recorded_run(tmp_path, steps=3000)
    tails = polled(rd)
    frame = train_frame(tails, ViewSettings(), now=tails[0].start_time + 10)
    assert isinstance(frame, TrainFrame)
    assert [ln.label for ln in frame.returns.lines] == ["return", "smoothed", "test"]
    assert frame.loss_names == ["LossQ", "LossPi"] and frame.loss_name == "LossQ"
    assert frame.rate.lines and frame.steps_per_sec is not None
    assert {name for name, _ in frame.phases} == {"Update", "Env", "Act"}
    (row,) = frame.header
    assert (row["algo"], row["env"], row["status"], row["step"], row["total"]) == (
        "sac", "Pendulum-v1", "finished", 3000, 3000)
    assert ("lr", 0.001) in row["hp"]
    assert frame.trainer == (None, None), "a finished run has no producer to sample"
    assert frame.error == ""


def test_nothing_new_gives_back_the_same_frame_and_plots_keep_their_identity(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    for step in range(100):
        run.scalar("LossQ", 1.0, step)
    run.flush()
    tails = polled(rd)
    settings = ViewSettings()
    first = train_frame(tails, settings, now=tails[0].start_time + 1)
    assert first.trainer[0] is not None, "a running producer is sampled"
    assert train_frame(tails, settings, now=tails[0].start_time + 2, previous=first) is first

    paused = replace(settings, paused=True)  # new settings: plots are built for them
    second = train_frame(tails, paused, now=tails[0].start_time + 2, previous=first)
    assert second is not first and second.loss is not first.loss
    third = train_frame(tails, paused, now=tails[0].start_time + 2, error="gone: OSError", previous=second)
    assert third is not second and third.loss is second.loss and third.error == "gone: OSError"

    run.scalar("LossQ", 2.0, 100)
    run.flush()
    poll_tails(tails)
    fourth = train_frame(tails, paused, now=tails[0].start_time + 3, previous=third)
    assert fourth.loss is not third.loss and fourth.loss.lines[0].x.max() == 100
    run.close()


def test_a_plot_that_cannot_be_built_is_a_line_in_the_header(tmp_path, recorded_run, monkeypatch):
    from spintui.tui import frames

    rd = recorded_run(tmp_path, steps=200)
    tails = polled(rd)
    monkeypatch.setattr(frames, "rate_plot", lambda tails, settings: 1 / 0)
    frame = train_frame(tails, ViewSettings(), now=0.0)
    assert frame.error == "cannot plot: ZeroDivisionError: division by zero"
    assert frame.returns is None and frame.header[0]["name"] == rd.name


def test_profile_frame_shows_the_sweep_grid_and_its_cases(tmp_path):
    rd = create_run(tmp_path, kind="profile", benchmark="blocksparse", config={"sizes": [[128, 128, 128]]})
    run = RunWriter(rd, heartbeat=False)
    run.log("kernel", mode="dsd", size=1024, block=32, density=0.1, median_ms=1.25, speedup=3.2)
    run.set_progress(step=1, total_steps=4)
    run.update_manifest()  # progress reaches run.json with the heartbeat, or now
    run.flush()
    tails = polled(rd)
    frame = profile_frame(tails, ViewSettings(), now=tails[0].start_time + 1)
    assert isinstance(frame, ProfileFrame)
    assert [k["mode"] for k in frame.kernels] == ["dsd"]
    assert frame.speedup is not None
    (row,) = frame.header
    assert row["algo"] == "blocksparse" and row["config"] == {"sizes": [[128, 128, 128]]}
    assert (row["step"], row["total"]) == (1, 4)
    run.close()
