"""The Textual dashboard through Textual's pilot, a real pty, and real trainer subprocesses."""

import asyncio
import importlib.util
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest
from spintui.tui.app import Dashboard, HelpScreen, PlotView, QuitDialog

SIZE = (120, 40)


def recorded_run(runs_dir: Path, name: str = "sac-recorded", steps: int = 3000, seed: int = 0) -> Path:
    """A finished SAC-like run written through RunWriter, as a trainer writes it."""
    rng = np.random.default_rng(seed)
    rd = create_run(runs_dir, kind="train", name=name, algo="sac", env="Pendulum-v1", seed=seed,
                    config={"lr": 0.001, "gamma": 0.99, "alpha": "0.2", "batch_size": 100,
                            "epochs": 3, "steps_per_epoch": 1000})
    run = RunWriter(rd, heartbeat=False)
    for step in range(steps):
        run.scalars({"LossQ": 5.0 / (1 + step / 300) + rng.random(), "LossPi": -step / 30.0,
                     "TimeUpdate": 0.004, "TimeEnv": 0.0008, "TimeAct": 0.0005}, step)
        if step % 100 == 99:
            run.episode(step, -1400.0 + step / 3 + rng.normal(0, 80), 100)
        if step % 1000 == 999:
            run.episode(step, -1000.0 + step / 4, 100, test=True)
            run.epoch(step // 1000 + 1, step + 1, {"AverageEpRet": -1400.0 + step / 3, "LossQ": 1.0,
                                                   "StepsPerSec": 110.0 + step / 100, "Time": step / 100})
    run.set_progress(step=steps, total_steps=steps)
    run.close("finished")
    return rd


def screen_text(app) -> str:
    from rich.console import Console

    console = Console(width=app.size.width, height=app.size.height, record=True, file=io.StringIO(),
                      color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                       simplify=True))
    return console.export_text()


async def wait_for(pilot, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def run_async(coro):
    return asyncio.run(coro)


def test_attach_to_recorded_run_shows_every_panel(tmp_path):
    rd = recorded_run(tmp_path)

    async def go():
        app = Dashboard([rd], refresh_s=0.1)
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


def test_keys_smoothing_axis_log_loss_pause(tmp_path):
    rd = recorded_run(tmp_path)

    async def go():
        app = Dashboard([rd], refresh_s=0.1)
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


def test_pause_holds_new_data_until_resumed(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    for step in range(100):
        run.scalar("LossQ", 1.0, step)
    run.flush()

    async def go():
        app = Dashboard([rd], refresh_s=0.05)
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


def test_help_screen_lists_every_key(tmp_path):
    rd = recorded_run(tmp_path, steps=200)

    async def go():
        app = Dashboard([rd], refresh_s=0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = screen_text(app)
            for binding in Dashboard.BINDINGS:
                assert binding.description in text, binding.description
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("question_mark")
            await pilot.pause()
            await pilot.press("q")  # closes the help, not the dashboard
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen) and app.is_running
    run_async(go())


def test_fits_80x24_and_overlays_several_runs_with_a_legend(tmp_path):
    a = recorded_run(tmp_path, name="seed0", seed=0)
    b = recorded_run(tmp_path, name="seed1", seed=1)

    async def go():
        app = Dashboard([a, b], refresh_s=0.1)
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


def test_profile_run_fills_the_kernel_table(tmp_path):
    rd = create_run(tmp_path, kind="profile", benchmark="blocksparse")
    run = RunWriter(rd, heartbeat=False)
    run.log("kernel", mode="dsd", size=1024, block=32, density=0.1, median_ms=1.25, speedup=3.2)
    run.flush()

    async def go():
        from textual.widgets import DataTable

        app = Dashboard([rd], refresh_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#kernels", DataTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            run.log("kernel", mode="sdd", size=1024, block=64, density=0.25, median_ms=2.5, speedup=1.5)
            run.flush()
            await wait_for(pilot, lambda: table.row_count == 2)
            assert [str(c.label) for c in table.columns.values()] == ["mode", "size", "block", "density",
                                                                      "median_ms", "speedup"]
            assert table.get_row_at(1)[0] == "sdd"
            assert "Kernels" in screen_text(app)
    run_async(go())
    run.close()


def test_nvml_failing_shows_system_panel_with_reason(tmp_path, monkeypatch):
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: (_ for _ in ()).throw(
        pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)))
    rd = recorded_run(tmp_path, steps=200)

    async def go():
        app = Dashboard([rd], refresh_s=0.1, telemetry_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one("#gpu")
            await wait_for(pilot, lambda: panel.border_title == "System" and "CPU" in screen_text(app))
            assert "no NVIDIA GPU (driver not loaded)" in screen_text(app)
    run_async(go())


def test_no_color_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    rd = recorded_run(tmp_path, steps=200)
    assert Dashboard([rd]).no_color


def test_quit_without_an_owned_trainer_exits_at_once(tmp_path):
    rd = recorded_run(tmp_path, steps=200)

    async def go():
        app = Dashboard([rd])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0 and app.outcome == "closed"
    run_async(go())


PRODUCER = textwrap.dedent("""
    # A tiny real trainer: writes the run through RunWriter and stops cleanly like algos.launch.
    import signal, sys, time
    from pathlib import Path
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import RunPaths
    run_dir, seconds = Path(sys.argv[1]), float(sys.argv[2])
    done_file = run_dir.parent / "finish-now"  # the test's way to let training end normally
    run = RunWriter(run_dir)
    signal.signal(signal.SIGTERM, lambda *a: run.request_stop())
    start, step = time.time(), 0
    while time.time() - start < seconds and not run.stop_requested and not done_file.exists():
        step += 1
        run.scalars({"LossQ": 1.0 / step, "TimeEnv": 0.001}, step)
        if step % 50 == 0:
            run.episode(step, -1000.0 + step, 50)
            run.set_progress(step=step, total_steps=int(seconds * 500))
        time.sleep(0.002)
    RunPaths(run_dir).checkpoints.mkdir(exist_ok=True)
    (RunPaths(run_dir).checkpoints / "final.txt").write_text(str(step))  # the final checkpoint
    run.close("stopped" if run.stop_requested else "finished")
""")


def start_producer(tmp_path: Path, seconds: float):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    proc = subprocess.Popen([sys.executable, str(script), str(rd), str(seconds)], start_new_session=True)
    return rd, proc


def wait_status(rd: Path, proc, timeout: float = 30.0) -> str:
    proc.wait(timeout=timeout)
    return read_manifest(rd)["status"]


def test_detach_leaves_the_trainer_running_to_the_end(tmp_path):
    rd, proc = start_producer(tmp_path, seconds=120.0)
    try:
        async def go():
            app = Dashboard([rd], owned=proc, refresh_s=0.1)
            async with app.run_test(size=SIZE) as pilot:
                loss = app.query_one("#loss", PlotView)
                await wait_for(pilot, lambda: loss.data is not None and loss.data.lines)
                await pilot.press("q")
                await pilot.pause()
                assert isinstance(app.screen, QuitDialog)
                await pilot.press("escape")  # cancel: nothing happens
                await pilot.pause()
                assert not isinstance(app.screen, QuitDialog) and app.is_running
                await pilot.press("q")
                await pilot.pause()
                await pilot.press("d")
                await pilot.pause()
            return app
        app = run_async(go())
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
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stop_ends_the_run_cleanly_with_a_checkpoint(tmp_path):
    rd, proc = start_producer(tmp_path, seconds=60.0)
    try:
        async def go():
            app = Dashboard([rd], owned=proc, refresh_s=0.1)
            async with app.run_test(size=SIZE) as pilot:
                await wait_for(pilot, lambda: app.frame is not None)
                await pilot.press("q")
                await pilot.pause()
                await pilot.click("#stop")
                await wait_for(pilot, lambda: not app.is_running, timeout=20)
            return app
        app = run_async(go())
        assert app.outcome == "stopped"
        assert wait_status(rd, proc, timeout=5) == "stopped"
        assert (RunPaths(rd).checkpoints / "final.txt").exists()
        assert RunPaths(rd).stop_request.exists(), "the stop request is also left for other hosts"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("spintui.algos.sac") is None, reason="SAC has not landed yet")
def test_detach_from_a_real_sac_trainer(tmp_path):
    from spintui.algos.config import config_to_dict, make_config
    from spintui.tui.cli import start_trainer

    cfg = make_config("sac", {"env": "Pendulum-v1", "steps": 1200, "steps_per_epoch": 600, "start_steps": 400,
                              "update_after": 400, "update_every": 50, "num_test_episodes": 1, "max_ep_len": 200,
                              "threads": 1, "device": "cpu"})
    rd = create_run(tmp_path, kind="train", algo="sac", env=cfg.env, seed=0, config=config_to_dict(cfg))
    proc = start_trainer(rd)
    try:
        async def go():
            app = Dashboard([rd], owned=proc, refresh_s=0.2)
            async with app.run_test(size=SIZE) as pilot:
                await wait_for(pilot, lambda: app.frame is not None and app.frame.header[0]["step"] > 0,
                               timeout=60)
                await pilot.press("q")
                await pilot.pause()
                await pilot.press("d")
                await pilot.pause()
            return app
        app = run_async(go())
        assert app.outcome == "detached" and proc.poll() is None
        assert wait_status(rd, proc, timeout=240) == "finished"
    finally:
        if proc.poll() is None:
            proc.kill()


class PtyTerminal:
    """`spintui watch ...` on a real pty whose output is read continuously, like a terminal does."""

    def __init__(self, args: list[str], size=(40, 120), env: dict | None = None):
        import fcntl
        import pty
        import struct
        import termios
        import threading

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-m", "spintui.tui.cli", "watch", *args],
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "TERM": "xterm-256color", **(env or {})},
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import select

        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    chunk = os.read(self.master, 65536)
                    if not chunk:
                        return
                    self.output += chunk
            except (OSError, ValueError):
                return

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(bytes(self.output)):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


BRAILLE_UTF8 = (b"\xe2\xa0", b"\xe2\xa1", b"\xe2\xa2", b"\xe2\xa3")


def colours_used(output: bytes) -> tuple[set, set]:
    """(grey, other) colours in the SGR sequences of a terminal stream (256-colour and truecolor)."""
    import re

    grey, other = set(), set()
    for params in re.findall(rb"\x1b\[([0-9;]*)m", output):
        for m in re.finditer(rb"[34]8;5;(\d+)", params):
            n = int(m.group(1))
            cube = n - 16
            is_grey = n >= 232 or n in (0, 7, 8, 15) or (
                16 <= n <= 231 and cube // 36 == (cube // 6) % 6 == cube % 6)
            (grey if is_grey else other).add(n)
        for m in re.finditer(rb"[34]8;2;(\d+);(\d+);(\d+)", params):
            rgb = tuple(int(v) for v in m.groups())
            (grey if len(set(rgb)) == 1 else other).add(rgb)
    return grey, other


def test_watch_in_a_real_terminal_quits_and_survives_a_hangup(tmp_path):
    rd = recorded_run(tmp_path, name="finished-run")
    term = PtyTerminal(["--runs-dir", str(tmp_path), "latest"])
    try:
        assert term.wait_for(lambda b: any(m in b for m in BRAILLE_UTF8) and b"Return" in b and b"finished" in b), \
            bytes(term.output[-500:])
        assert colours_used(bytes(term.output))[1], "curves are drawn in colour"
        os.write(term.master, b"q")
        assert term.proc.wait(timeout=15) == 0
    finally:
        term.close()

    # NO_COLOR: greys only. Then the terminal goes away (SSH dropped): the viewer exits by itself.
    term = PtyTerminal([str(rd)], env={"NO_COLOR": "1"})
    try:
        assert term.wait_for(lambda b: any(m in b for m in BRAILLE_UTF8) and b"Return" in b)
        grey, other = colours_used(bytes(term.output))
        assert grey and not other, other
        os.close(term.master)
        term.proc.send_signal(signal.SIGHUP)  # what the kernel sends the session when its terminal closes
        assert term.proc.wait(timeout=15) == 0
    finally:
        term.close()


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spintui.tui.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_watch_errors_are_one_line(tmp_path):
    recorded_run(tmp_path, name="alpha", steps=100)
    for args, expected in (
        (["watch", "--runs-dir", str(tmp_path), "nosuchrun"], "no run 'nosuchrun'"),
        (["watch", "--runs-dir", str(tmp_path), "zzz*"], "no runs match 'zzz*'"),
        (["watch", "--runs-dir", str(tmp_path / "empty")], "no runs in"),
    ):
        res = cli(*args)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in res.stderr


def test_watch_without_a_terminal_follows_headless(tmp_path):
    recorded_run(tmp_path, name="alpha", steps=100)
    recorded_run(tmp_path, name="beta", steps=100)
    res = cli("watch", "--runs-dir", str(tmp_path), "alpha")
    assert res.returncode == 0 and "finished: 100 steps" in res.stdout
    res = cli("watch", "--runs-dir", str(tmp_path), "*")
    assert res.returncode == 2 and "needs a terminal" in res.stderr


def test_watch_resolves_globs_names_and_paths(tmp_path):
    from spintui.profiles.runs import resolve_watch_runs

    a = recorded_run(tmp_path, name="sac-s0", steps=10)
    b = recorded_run(tmp_path, name="sac-s1", steps=10)
    c = recorded_run(tmp_path, name="other", steps=10)
    assert resolve_watch_runs(["sac-*"], tmp_path) == [a, b]
    assert resolve_watch_runs([str(tmp_path / "sac-s*"), "sac-s0", "latest"], tmp_path) == [a, b, c]
    assert resolve_watch_runs([str(c)], tmp_path) == [c]


SNAPSHOT = Path(__file__).parent / "snapshots" / "dashboard_recorded_120x40.txt"


def test_screen_snapshot_of_a_recorded_run(tmp_path):
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
        app = Dashboard([rd], refresh_s=0.05, telemetry=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None and app.query_one("#returns", PlotView).data)
            await pilot.pause(0.3)
            return screen_text(app)
    text = run_async(go())
    if os.environ.get("SPINTUI_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


def test_viewer_on_another_host_shows_the_gpu_samples_the_trainer_logged(tmp_path):
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
        app = Dashboard([rd], refresh_s=0.05, telemetry_s=0.05)
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


def test_ctrl_c_in_a_headless_watch_never_stops_the_training(tmp_path):
    rd, proc = start_producer(tmp_path, seconds=120.0)
    # -X faulthandler: if the watcher ever hangs, SIGABRT makes it print every thread's stack.
    watcher = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "spintui.tui.cli", "watch", str(rd)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
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
        assert proc.poll() is None and not RunPaths(rd).stop_request.exists()
        (tmp_path / "finish-now").touch()
        assert wait_status(rd, proc) == "finished"
    finally:
        for p in (watcher, proc):
            if p.poll() is None:
                p.kill()


def test_lower_priority_applies_to_every_thread():
    # In a child process: nice values would otherwise stick to this test run's threads.
    child = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, threading
        from spintui.tui.app import lower_priority
        stop = threading.Event()
        t = threading.Thread(target=stop.wait); t.start()
        before = {int(x): os.getpriority(os.PRIO_PROCESS, int(x)) for x in os.listdir('/proc/self/task')}
        lower_priority(5)
        after = {int(x): os.getpriority(os.PRIO_PROCESS, int(x)) for x in os.listdir('/proc/self/task')}
        stop.set(); t.join()
        print(all(after[k] == min(19, before[k] + 5) for k in before), len(before) >= 2)
    """)], capture_output=True, text=True, timeout=60)
    assert child.stdout.split() == ["True", "True"], child.stderr
