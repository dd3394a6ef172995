"""Fixtures shared by several test modules, a section per subject."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# The test workers share this machine's cores: every trainer a test starts takes one torch thread, as an
# experiment gives its runs (a run of its own takes torch's choice, tested with this variable removed).
os.environ.setdefault("OMP_NUM_THREADS", "1")

@pytest.fixture(autouse=True)
def viewer_cache(tmp_path_factory, monkeypatch):
    """Viewers (and the CLIs tests start) keep their parse cache in a directory of the test's own."""
    directory = tmp_path_factory.mktemp("viewer-cache")
    monkeypatch.setenv("SPINTUI_VIEWER_CACHE", str(directory))
    return directory


# --------------------------------------------------------------------------------------------------
# Dashboards: recorded runs to show, and helpers for driving an App through Textual's pilot


def _recorded_run(runs_dir: Path, name: str = "sac-recorded", steps: int = 3000, seed: int = 0) -> Path:
    """A finished SAC-like run written through RunWriter, as a trainer writes it."""
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import create_run

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


def _recorded_experiment(runs_dir: Path, name: str = "exp", gammas=(0.98, 0.99), seeds=(0, 1, 2),
                         steps: int = 2000, statuses: dict | None = None) -> Path:
    """An experiment of SAC-like runs, one per (gamma, seed), written as the scheduler and trainers do.

    Run `gamma{g}_s{s}` (gamma index i) logs a training episode every 100 steps with return
    -1000 + step / 10 + 100 * s - 200 * i and, at its end, one test episode and a test return of
    -200 + 10 * s - 50 * i, at 100 + 10 * s steps/s. `statuses` leaves runs queued ("queued") or
    running ("running": claimed and not closed) instead of finished."""
    from spintui.profiles.experiments import create_experiment
    from spintui.profiles.run_writer import RunWriter

    statuses = statuses or {}
    points = [{"name": f"gamma{g}_s{s}", "env": "Pendulum-v1", "seed": s,
               "config": {"env": "Pendulum-v1", "seed": s, "gamma": g, "lr": 0.001, "steps": steps},
               "values": {"gamma": g, "seed": s}} for g in gammas for s in seeds]
    exp_dir = create_experiment(runs_dir, name, algo="sac", varying=["gamma", "seed"],
                                grid={"gamma": list(gammas), "seed": list(seeds)}, points=points,
                                argv=["spintui", "train", "sac"], settings={"parallel": 2, "ray": None})
    for point in points:
        status = statuses.get(point["name"], "finished")
        if status == "queued":
            continue
        i, s = gammas.index(point["config"]["gamma"]), point["seed"]
        run = RunWriter(exp_dir / point["name"], heartbeat=False)
        for step in range(100, steps + 1, 100):
            run.episode(step, -1000.0 + step / 10 + 100 * s - 200 * i, 100)
        final = -200.0 + 10 * s - 50 * i
        run.episode(steps, final, 100, test=True)
        run.set_progress(step=steps, total_steps=steps, steps_per_sec=100.0 + 10 * s, test_return=final)
        if status == "running":
            run.flush()
            run.update_manifest()
        else:
            run.close(status)
    return exp_dir


def _screen_text(app) -> str:
    from rich.console import Console

    console = Console(width=app.size.width, height=app.size.height, record=True, file=io.StringIO(),
                      color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                       simplify=True))
    return console.export_text()


async def _wait_for(pilot, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


async def _quit_and_answer(pilot, answer: str) -> str:
    """Press q, check that the quit question is asked, answer it with a key (s, d, escape) or by
    clicking a button ("#stop"); returns the question's text."""
    from spintui.tui.screens import QuitDialog

    await pilot.press("q")
    await pilot.pause()
    assert isinstance(pilot.app.screen, QuitDialog)
    text = _screen_text(pilot.app)
    if answer.startswith("#"):
        await pilot.click(answer)
    else:
        await pilot.press(answer)
    await pilot.pause()
    return text


@pytest.fixture
def recorded_run():
    """`recorded_run(runs_dir, name=..., steps=..., seed=...)`: a finished SAC-like run; returns its directory."""
    return _recorded_run


@pytest.fixture
def recorded_experiment():
    """`recorded_experiment(runs_dir, name=..., gammas=..., seeds=..., statuses=...)`: see _recorded_experiment."""
    return _recorded_experiment


@pytest.fixture
def screen_text():
    """`screen_text(app)`: the app's whole screen as plain text, as a terminal would show it."""
    return _screen_text


@pytest.fixture
def wait_for():
    """`await wait_for(pilot, predicate, timeout=15)`: let the app run until `predicate()` holds."""
    return _wait_for


@pytest.fixture
def quit_and_answer():
    """`await quit_and_answer(pilot, "d")`: quit, and answer the stop/detach question; returns its text."""
    return _quit_and_answer


@pytest.fixture
def stand_in_producer():
    """A process standing in for a producer the dashboard started: it only sleeps; killed at the end."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


# --------------------------------------------------------------------------------------------------
# The command line: as a user runs it (a subprocess), or in this process (fast, for many cases)


class CLIResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr

    def assert_one_line_error(self, code: int, *fragments: str) -> str:
        """Exit `code`, one line on stderr starting with 'spintui' and holding every fragment, no traceback."""
        err = self.stderr.strip()
        assert self.returncode == code, (self.returncode, self.stdout[-2000:], err[-2000:])
        assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("spintui"), err
        for fragment in fragments:
            assert fragment in err, err
        return err


def _run_spintui(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300,
                 runs_dir: Path | None = None) -> CLIResult:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160", **(env or {})}
    if runs_dir is not None:
        full_env["SPINTUI_RUNS_DIR"] = str(runs_dir)
    out = subprocess.run([sys.executable, "-m", "spintui", *args], cwd=cwd, env=full_env, capture_output=True,
                         text=True, timeout=timeout)
    return CLIResult(out.returncode, out.stdout, out.stderr)


@pytest.fixture
def spintui():
    """`spintui(*args, cwd=None, env=None, runs_dir=None)`: run the CLI in a subprocess; a CLIResult."""
    return _run_spintui


@pytest.fixture
def spintui_here(capsys):
    """`spintui_here(*args)`: the CLI's main() in this process (no start-up cost); a CLIResult."""
    from spintui.tui.cli import main

    def run(*args: str) -> CLIResult:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CLIResult(code, out, err)

    return run

# --------------------------------------------------------------------------------------------------
# A run trained by the CLI on a custom environment (tests/envs_for_tests.py), mirrored to TensorBoard

TESTS_DIR = Path(__file__).resolve().parent
DRIFT_LENGTH = 7


def spintui_env() -> dict:
    """The environment for a `spintui` subprocess that can import tests/envs_for_tests.py."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "160",
            "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{path}" if path else str(TESTS_DIR)}


@pytest.fixture(scope="session")
def drift_run(tmp_path_factory):
    """(runs_dir, run_dir, tensorboard_dir) of a short SAC run on envs_for_tests:Drift-v0 with
    --env-kwargs length=7 and --tensorboard, trained headless through the CLI."""
    root = tmp_path_factory.mktemp("drift")
    runs_dir, tb_dir = root / "runs", root / "tb"
    result = subprocess.run(
        [sys.executable, "-m", "spintui", "train", "sac", "--env", "envs_for_tests:Drift-v0",
         "--env-kwargs", f"length={DRIFT_LENGTH}", "--steps", "140", "--steps-per-epoch", "70",
         "--start-steps", "35", "--update-after", "35", "--num-test-episodes", "2", "--name", "drift",
         "--runs-dir", str(runs_dir), "--tensorboard", str(tb_dir), "--headless"],
        capture_output=True, text=True, env=spintui_env(), timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    return runs_dir, runs_dir / "drift", tb_dir


# --------------------------------------------------------------------------------------------------
# Logs of other tools (tests/foreign_log_writers.py)


@pytest.fixture(scope="session")
def sb3_run(tmp_path_factory) -> Path:
    """A TensorBoard run written by Stable-Baselines3 itself: PPO on CartPole-v1 for 2,048 steps in
    rollouts of 128, an evaluation every 512 (about 15 s); shared by the session: copy it to change it."""
    from foreign_log_writers import sb3_ppo_log

    return sb3_ppo_log(tmp_path_factory.mktemp("sb3"))
