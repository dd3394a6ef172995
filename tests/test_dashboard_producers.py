"""Viewers of a run whose producer is a real process: detach, stop from the dashboard, Ctrl-C a watcher."""

import asyncio
import importlib.util
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spintui.profiles.store import create_run, read_manifest
from spintui.tui.screens import QuitDialog
from spintui.tui.train_dashboard import TrainDashboard
from spintui.tui.widgets import PlotView

SIZE = (120, 40)

PRODUCER = textwrap.dedent("""
    # A tiny real trainer: writes the run through RunWriter and stops cleanly like algos.launch.
    import sys, time
    from pathlib import Path
    from spintui.profiles.processes import install_stop_handlers
    from spintui.profiles.run_writer import RunWriter
    run_dir, seconds = Path(sys.argv[1]), float(sys.argv[2])
    done_file = run_dir.parent / "finish-now"  # the test's way to let training end normally
    run = RunWriter(run_dir)
    install_stop_handlers(run)
    start, step = time.time(), 0
    while time.time() - start < seconds and not run.stop_requested and not done_file.exists():
        step += 1
        run.scalars({"LossQ": 1.0 / step, "TimeEnv": 0.001}, step)
        if step % 50 == 0:
            run.episode(step, -1000.0 + step, 50)
            run.set_progress(step=step, total_steps=int(seconds * 500))
        time.sleep(0.002)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / "final.txt").write_text(str(step))  # the final checkpoint
    run.close("stopped" if run.stop_requested else "finished")
""")


@pytest.fixture
def producers():
    """Processes a test started, killed at its end if they still run."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def producer(tmp_path, producers):
    """`producer(seconds)`: a tiny real trainer writing a new run for that long; returns (run dir, Popen)."""
    def start(seconds: float) -> tuple[Path, subprocess.Popen]:
        rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
        script = tmp_path / "producer.py"
        script.write_text(PRODUCER)
        proc = subprocess.Popen([sys.executable, str(script), str(rd), str(seconds)], start_new_session=True)
        producers.append(proc)
        return rd, proc
    return start


def wait_status(rd: Path, proc, timeout: float = 30.0) -> str:
    proc.wait(timeout=timeout)
    return read_manifest(rd)["status"]


def test_detach_leaves_the_trainer_running_to_the_end(tmp_path, producer, wait_for, quit_and_answer):
    rd, proc = producer(seconds=120.0)

    async def go():
        app = TrainDashboard([rd], owned=proc, refresh_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            loss = app.query_one("#loss", PlotView)
            await wait_for(pilot, lambda: loss.data is not None and loss.data.lines)
            await quit_and_answer(pilot, "escape")  # cancel: nothing happens
            assert not isinstance(app.screen, QuitDialog) and app.is_running
            await quit_and_answer(pilot, "d")
        return app
    app = asyncio.run(go())
    assert app.outcome == "detached"
    step = read_manifest(rd).get("progress", {}).get("step", 0)
    deadline = time.monotonic() + 15  # the heartbeat (every 2 s) shows the trainer still stepping
    while time.monotonic() < deadline and read_manifest(rd).get("progress", {}).get("step", 0) <= step:
        time.sleep(0.2)
    assert proc.poll() is None, "detaching must not stop training"
    manifest = read_manifest(rd)
    assert manifest["status"] == "running" and manifest["progress"].get("step", 0) > step
    (tmp_path / "finish-now").touch()
    assert wait_status(rd, proc) == "finished"


def test_stop_ends_the_run_cleanly_with_a_checkpoint(producer, wait_for, quit_and_answer):
    rd, proc = producer(seconds=60.0)

    async def go():
        app = TrainDashboard([rd], owned=proc, refresh_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None)
            await quit_and_answer(pilot, "#stop")
            await wait_for(pilot, lambda: not app.is_running, timeout=20)
        return app
    app = asyncio.run(go())
    assert app.outcome == "stopped"
    assert wait_status(rd, proc, timeout=5) == "stopped"
    assert (rd / "checkpoints" / "final.txt").exists()
    assert (rd / "control" / "stop").exists(), "the stop request is also left for other hosts"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("spintui.algos.sac") is None, reason="SAC has not landed yet")
def test_detach_from_a_real_sac_trainer(tmp_path, producers, wait_for, quit_and_answer):
    from spintui.algos.config import config_to_dict, make_config
    from spintui.profiles.processes import start_trainer

    cfg = make_config("sac", {"env": "Pendulum-v1", "steps": 1200, "steps_per_epoch": 600, "start_steps": 400,
                              "update_after": 400, "update_every": 50, "num_test_episodes": 1, "max_ep_len": 200,
                              "threads": 1, "device": "cpu"})
    rd = create_run(tmp_path, kind="train", algo="sac", env=cfg.env, seed=0, config=config_to_dict(cfg))
    proc = start_trainer(rd)
    producers.append(proc)

    async def go():
        app = TrainDashboard([rd], owned=proc, refresh_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None and app.frame.header[0]["step"] > 0, timeout=60)
            await quit_and_answer(pilot, "d")
        return app
    app = asyncio.run(go())
    assert app.outcome == "detached" and proc.poll() is None
    assert wait_status(rd, proc, timeout=240) == "finished"


def test_ctrl_c_in_a_headless_watch_never_stops_the_training(tmp_path, producer, producers):
    rd, proc = producer(seconds=120.0)
    # -X faulthandler: if the watcher ever hangs, SIGABRT makes it print every thread's stack.
    watcher = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "spintui.tui.cli", "watch", str(rd)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    producers.append(watcher)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "run " not in (watcher.stdout.readline() or ""):
        pass
    watcher.send_signal(signal.SIGINT)
    try:
        code = watcher.wait(timeout=15)
    except subprocess.TimeoutExpired:
        watcher.send_signal(signal.SIGABRT)
        pytest.fail("the watcher ignored Ctrl-C; its stacks:\n" + watcher.communicate(timeout=10)[1][-4000:])
    assert code == 130
    time.sleep(0.3)
    assert proc.poll() is None and not (rd / "control" / "stop").exists()
    (tmp_path / "finish-now").touch()
    assert wait_status(rd, proc) == "finished"
