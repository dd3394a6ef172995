"""The training dashboard (and what both dashboards share) through Textual's pilot."""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spintui.errors import UsageError
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest
from spintui.tui.app import dashboard_class, run_dashboard
from spintui.tui.profile_dashboard import ProfileDashboard
from spintui.tui.screens import HelpScreen
from spintui.tui.train_dashboard import TrainDashboard
from spintui.tui.widgets import PlotView

SIZE = (120, 40)


def run_async(coro):
    return asyncio.run(coro)


def test_attach_to_recorded_run_shows_every_panel(tmp_path, recorded_run, screen_text, wait_for):
    rd = recorded_run(tmp_path)

    async def go():
        app = TrainDashboard([rd], refresh_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None and app.query_one("#returns", PlotView).data)
            await pilot.pause(0.2)
            text = screen_text(app)
            for title in ("Return", "Loss: LossQ (1/2, j/k)", "Timing", "sac", "Pendulum-v1", "finished",
                          "step 3,000/3,000 (100%)", "lr=0.001", "Update", "Env", "Act"):
                assert title in text, title
            assert "System" in text or "GPU" in text
            returns = app.query_one("#returns", PlotView).data
            assert [ln.label for ln in returns.lines] == ["return", "smoothed", "test"]
            assert any("\u2800" < ch <= "\u28ff" for ch in text), "braille curves drawn"
    run_async(go())


def test_keys_smoothing_axis_log_loss_pause(tmp_path, recorded_run, screen_text, wait_for):
    rd = recorded_run(tmp_path)

    async def go():
        app = TrainDashboard([rd], refresh_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one("#returns", PlotView)
            await wait_for(pilot, lambda: view.data is not None and view.data.lines)
            smooth_before = view.data.lines[1].y.copy()
            await pilot.press("s")
            assert app.settings.smoothing == 0.8
            await wait_for(pilot, lambda: view.data.lines[1].y.tolist() != smooth_before.tolist())
            await pilot.press("S", "S", "S", "S")
            assert app.settings.smoothing == 0.0
            await wait_for(pilot, lambda: [ln.label for ln in view.data.lines] == ["smoothed", "test"])
            assert "ema" not in view.border_subtitle and "raw" in view.border_subtitle

            await pilot.press("x")
            assert app.settings.x_axis == "time"
            await wait_for(pilot, lambda: view.data.x_label == "time")
            assert view.data.lines[0].x.max() < 120, "seconds since the run started, not steps"
            assert "wall time" in str(app.query_one("#keys").render())
            await pilot.press("x")
            await wait_for(pilot, lambda: view.data.x_label == "steps")

            await pilot.press("l")
            await wait_for(pilot, lambda: view.data.log_y)
            assert view.data.lines[0].y.max() < 4, "values on a log scale"

            loss = app.query_one("#loss", PlotView)
            await pilot.press("j")
            await wait_for(pilot, lambda: "LossPi (2/2" in loss.border_title)
            await pilot.press("j")
            await wait_for(pilot, lambda: "LossQ (1/2" in loss.border_title)
            await pilot.press("k")
            await wait_for(pilot, lambda: "LossPi" in loss.border_title)

            await pilot.press("p")
            assert app.settings.paused
            await pilot.pause(0.2)
            assert "(paused)" in screen_text(app)
            await pilot.press("p")
            assert not app.settings.paused
    run_async(go())


def test_pause_holds_new_data_until_resumed(tmp_path, wait_for):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    for step in range(100):
        run.scalar("LossQ", 1.0, step)
    run.flush()

    async def go():
        app = TrainDashboard([rd], refresh_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            loss = app.query_one("#loss", PlotView)
            await wait_for(pilot, lambda: loss.data is not None and loss.data.lines)
            await pilot.press("p")
            await pilot.pause(0.2)
            for step in range(100, 200):
                run.scalar("LossQ", 2.0, step)
            run.flush()
            await pilot.pause(0.4)
            assert loss.data.lines[0].x.max() == 99, "paused: new points are not shown"
            await pilot.press("p")
            await wait_for(pilot, lambda: loss.data.lines[0].x.max() == 199)
    run_async(go())
    run.close()


# Both dashboards: the help screen and the quit question, on a run its producer is still writing
KINDS = {
    "train": (TrainDashboard, dict(algo="sac", env="Pendulum-v1", seed=0), "Timing (steps/s, time per phase)"),
    "profile": (ProfileDashboard, dict(benchmark="blocksparse"), "Speedup vs density per block size"),
}


@pytest.fixture(params=list(KINDS))
def live(request, tmp_path):
    """(dashboard class, its run dir, a line of its help) for a run of each kind, still being written."""
    cls, fields, panels = KINDS[request.param]
    rd = create_run(tmp_path, kind=request.param, name="live", **fields)
    run = RunWriter(rd, heartbeat=False)
    yield cls, rd, panels
    run.close()


def test_help_screen_lists_every_key(live, screen_text):
    cls, rd, panels = live

    async def go():
        app = cls([rd], refresh_s=0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = screen_text(app)
            for binding in cls.BINDINGS:
                assert binding.description in text, binding.description
            assert panels in text
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("question_mark")
            await pilot.pause()
            await pilot.press("q")  # closes the help, not the dashboard
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen) and app.is_running
    run_async(go())


def test_quit_asks_whether_to_stop_or_detach_a_producer_it_started(live, stand_in_producer, wait_for,
                                                                    quit_and_answer):
    cls, rd, _ = live

    async def go():
        app = cls([rd], owned=stand_in_producer, refresh_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None)
            text = await quit_and_answer(pilot, "d")
            assert f"{cls.QUIT_TEXT.running} (live)" in text and cls.QUIT_TEXT.detach in text
        return app.outcome

    assert run_async(go()) == "detached"
    assert stand_in_producer.poll() is None, "detaching leaves the producer alone"


def test_fits_80x24_and_overlays_several_runs_with_a_legend(tmp_path, recorded_run, screen_text, wait_for):
    a = recorded_run(tmp_path, name="seed0", seed=0)
    b = recorded_run(tmp_path, name="seed1", seed=1)

    async def go():
        app = TrainDashboard([a, b], refresh_s=0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one("#returns", PlotView)
            await wait_for(pilot, lambda: view.data is not None and len(view.data.lines) == 4)
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "2 runs" in text and "seed0" in text and "seed1" in text
            for title in ("Return", "Loss", "Timing"):
                assert title in text
            assert "seed0" in view.border_subtitle and "seed1" in view.border_subtitle
            lines = text.splitlines()
            assert len(lines) == 24 and all(len(ln) <= 80 for ln in lines)
    run_async(go())


def test_nvml_failing_shows_system_panel_with_reason(tmp_path, monkeypatch, recorded_run, screen_text, wait_for):
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: (_ for _ in ()).throw(
        pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)))
    rd = recorded_run(tmp_path, steps=200)

    async def go():
        app = TrainDashboard([rd], refresh_s=0.1, telemetry_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one("#gpu")
            await wait_for(pilot, lambda: panel.border_title == "System" and "CPU" in screen_text(app))
            assert "no NVIDIA GPU (driver not loaded)" in screen_text(app)
    run_async(go())


def test_no_color_is_honoured(tmp_path, monkeypatch, recorded_run):
    monkeypatch.setenv("NO_COLOR", "1")
    rd = recorded_run(tmp_path, steps=200)
    assert TrainDashboard([rd]).no_color


def test_quit_without_an_owned_trainer_exits_at_once(tmp_path, recorded_run):
    rd = recorded_run(tmp_path, steps=200)

    async def go():
        app = TrainDashboard([rd])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0 and app.outcome == "closed"
    run_async(go())


SNAPSHOT = Path(__file__).parent / "snapshots" / "dashboard_recorded_120x40.txt"


def test_screen_snapshot_of_a_recorded_run(tmp_path, recorded_run, screen_text, wait_for):
    """The whole screen, as text, for fixed data (fixed times, no telemetry, no clock, no cursor).

    Regenerate after an intended change with SPINTUI_UPDATE_SNAPSHOTS=1 and review the diff.
    """
    from spintui.profiles.store import write_json_atomic

    rd = recorded_run(tmp_path, name="snapshot-run", steps=3000)
    manifest = read_manifest(rd)
    manifest.update(start_time=1_790_000_000.0, end_time=1_790_000_754.0, heartbeat=1_790_000_754.0,
                    host="snapshot-host", pid=1)
    write_json_atomic(RunPaths(rd).manifest, manifest)

    async def go():
        app = TrainDashboard([rd], refresh_s=0.05, telemetry=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None and app.query_one("#returns", PlotView).data)
            await pilot.pause(0.3)
            return screen_text(app)
    text = run_async(go())
    if os.environ.get("SPINTUI_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


def test_viewer_on_another_host_shows_the_gpu_samples_the_trainer_logged(tmp_path, screen_text, wait_for):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    run.update_manifest(host="gpu-node-7")  # the run directory is read over a shared filesystem
    gpu_record = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "utilization": 91, "memory_used": 20 * 2**30,
                  "memory_total": 80 * 2**30, "power_w": 512.0, "power_limit_w": 700.0, "temperature_c": 66,
                  "sm_clock_mhz": 1980, "processes": [{"pid": 4242, "used_bytes": 19 * 2**30, "name": "python",
                                                       "is_trainer": True}]}
    run.log("gpu", gpus=[gpu_record], trainer_match="matched")
    run.scalar("LossQ", 1.0, 1)
    run.flush()

    async def go():
        app = TrainDashboard([rd], refresh_s=0.05, telemetry_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one("#gpu")
            await wait_for(pilot, lambda: panel.border_title == "GPU (logged on gpu-node-7)")
            await pilot.pause(0.3)  # local telemetry keeps arriving and must not overwrite it
            text = screen_text(app)
            assert panel.border_title == "GPU (logged on gpu-node-7)"
            assert "NVIDIA H100 80GB HBM3" in text and "91%" in text and "512/700 W" in text
            assert "▶    4242" in text and "trainer" in text
    run_async(go())
    run.close()


def test_lower_priority_applies_to_every_thread():
    # In a child process: nice values would otherwise stick to this test run's threads.
    child = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, threading
        from spintui.tui.dashboard_base import lower_priority
        stop = threading.Event()
        t = threading.Thread(target=stop.wait); t.start()
        before = {int(x): os.getpriority(os.PRIO_PROCESS, int(x)) for x in os.listdir('/proc/self/task')}
        lower_priority(5)
        after = {int(x): os.getpriority(os.PRIO_PROCESS, int(x)) for x in os.listdir('/proc/self/task')}
        stop.set(); t.join()
        print(all(after[k] == min(19, before[k] + 5) for k in before), len(before) >= 2)
    """)], capture_output=True, text=True, timeout=60)
    assert child.stdout.split() == ["True", "True"], child.stderr


def test_the_runs_kind_picks_the_dashboard_and_a_mix_is_refused(tmp_path, recorded_run):
    train = recorded_run(tmp_path, name="train-run", steps=10)
    profile = create_run(tmp_path, kind="profile", benchmark="blocksparse", name="profile-run")
    assert dashboard_class([train]) is TrainDashboard
    assert dashboard_class([profile]) is ProfileDashboard
    with pytest.raises(UsageError) as err:
        run_dashboard([train, profile])
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "profile and train" in message and "one kind" in message
