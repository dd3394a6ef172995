"""Listing and watching runs: damaged manifests never hide other runs; dead trainers show as crashed at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from spintui.errors import RunError, UsageError
from spintui.profiles.provenance import host_name
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.runs import list_runs, resolve_run, resolve_watch_runs
from spintui.profiles.store import (
    DamagedRunError,
    RunPaths,
    create_run,
    effective_status,
    process_start_time,
    read_manifest,
    write_json_atomic,
)

ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}

# ------------------------------------------------------------------------------------------------
# Damaged run.json

DAMAGED_FORMS = ["garbage", "list", "directory", "unreadable", "unreadable-permissions"]
REASONS = {
    "garbage": "not valid JSON",
    "list": "holds a JSON list, not an object",
    "directory": "is not a file",
    "unreadable": "cannot read run.json",
    "unreadable-permissions": "cannot read run.json",
}


def damage(run_dir: Path, form: str) -> None:
    manifest = RunPaths(run_dir).manifest
    manifest.unlink()
    if form == "garbage":
        manifest.write_bytes(b'{"kind": "train", "status": "runn')
    elif form == "list":
        manifest.write_text(json.dumps([{"kind": "train"}]))
    elif form == "directory":
        manifest.mkdir()
    elif form == "unreadable":  # a link to itself: every open fails (ELOOP), even for root
        manifest.symlink_to(manifest.name)
    elif form == "unreadable-permissions":
        if os.geteuid() == 0:
            pytest.skip("root reads files whatever their permissions")
        manifest.write_text("{}")
        manifest.chmod(0)


def finished_run(runs_dir: Path, name: str) -> Path:
    rd = create_run(runs_dir, kind="train", name=name, algo="sac", env="Pendulum-v1", seed=0)
    with RunWriter(rd, heartbeat=False) as w:
        w.set_progress(step=100, total_steps=100)
    return rd


def damaged_run(runs_dir: Path, name: str, form: str) -> Path:
    rd = create_run(runs_dir, kind="train", name=name, algo="sac", env="Pendulum-v1", seed=0)
    damage(rd, form)
    return rd


def spintui(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "spintui", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("form", DAMAGED_FORMS)
def test_list_runs_shows_a_damaged_run_beside_a_healthy_one(tmp_path, form):
    healthy = finished_run(tmp_path, "healthy")
    damaged_run(tmp_path, "broken", form)
    runs = {r.name: r for r in list_runs(tmp_path)}
    assert runs["healthy"].status == "finished" and runs["healthy"].reason is None
    assert runs["broken"].status == "damaged"
    assert REASONS[form] in runs["broken"].reason
    with pytest.raises(DamagedRunError, match="damaged"):
        read_manifest(tmp_path / "broken")
    assert resolve_run("latest", tmp_path) == healthy  # latest never picks a damaged run
    with pytest.raises(RunError, match="damaged"):
        resolve_run("broken", tmp_path)


@pytest.mark.parametrize("form", DAMAGED_FORMS)
def test_spintui_runs_lists_damaged_runs_with_the_reason(tmp_path, form):
    finished_run(tmp_path, "healthy")
    damaged_run(tmp_path, "broken", form)
    result = spintui("runs", "--json", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["healthy"]["status"] == "finished" and rows["healthy"]["reason"] is None
    assert rows["healthy"]["steps"] == 100
    assert rows["broken"]["status"] == "damaged" and REASONS[form] in rows["broken"]["reason"]
    table = spintui("runs", "--runs-dir", str(tmp_path))
    assert table.returncode == 0, table.stderr
    lines = {line.split()[1]: line for line in table.stdout.splitlines() if line.startswith("│")}
    assert "finished" in lines["healthy"]
    assert "damaged" in lines["broken"] and REASONS[form].split()[-1] in lines["broken"], table.stdout


@pytest.mark.parametrize("form", ["garbage", "directory"])
def test_watch_of_a_damaged_run_is_a_one_line_error(tmp_path, form):
    finished_run(tmp_path, "healthy")
    damaged_run(tmp_path, "broken", form)
    assert_one_line_error(spintui("watch", "--runs-dir", str(tmp_path), "broken"), 1, "damaged", REASONS[form])
    assert_one_line_error(spintui("watch", str(tmp_path / "broken")), 1, "damaged")


def test_glob_skips_damaged_runs_with_a_warning_and_keeps_the_healthy_one(tmp_path):
    healthy = finished_run(tmp_path, "sac-healthy")
    damaged_run(tmp_path, "sac-broken", "list")
    warnings = []
    assert resolve_watch_runs(["sac-*"], tmp_path, warn=warnings.append) == [healthy]
    assert len(warnings) == 1 and "sac-broken" in warnings[0] and "not an object" in warnings[0]

    result = spintui("watch", "--runs-dir", str(tmp_path), "sac-*")  # no terminal: follows headless
    assert result.returncode == 0, result.stderr
    assert "finished: 100 steps" in result.stdout
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "sac-broken" in err[0], result.stderr

    damaged_run(tmp_path, "only-broken", "garbage")
    assert_one_line_error(spintui("watch", "--runs-dir", str(tmp_path), "only-*"), 1, "no readable runs match",
                          "only-broken")


def test_runs_dir_that_is_a_file_is_a_usage_error(tmp_path):
    some_file = tmp_path / "some-file.txt"
    some_file.write_text("not a directory\n")
    assert_one_line_error(spintui("runs", "--runs-dir", str(some_file)), 2, "not a directory")
    assert_one_line_error(spintui("runs", "--json", "--runs-dir", str(some_file)), 2, "not a directory")
    assert_one_line_error(spintui("runs", "--runs-dir", str(tmp_path / "missing")), 1, "does not exist")
    with pytest.raises(UsageError):
        list_runs(some_file)


ODD_FIELDS = {"progress": ["not", "a", "dict"], "start_time": "yesterday", "heartbeat": "now", "status": 7,
              "name": 12, "kind": ["train"], "config": "gamma=0.9", "versions": None, "pid": "1234",
              "end_time": {}, "algo": 3, "env": None, "environment": [1]}


def test_odd_typed_manifest_fields_never_crash_a_viewer(tmp_path):
    rd = create_run(tmp_path, kind="train", name="odd", algo="sac", env="Pendulum-v1", seed=0)
    manifest = json.loads(RunPaths(rd).manifest.read_text())
    manifest.update(ODD_FIELDS)
    write_json_atomic(RunPaths(rd).manifest, manifest)
    odd_progress = create_run(tmp_path, kind="train", name="odd-progress", algo="sac", env="Pendulum-v1", seed=0)
    manifest = json.loads(RunPaths(odd_progress).manifest.read_text())
    manifest.update(status="finished", progress={"step": "many", "total_steps": [1], "last_return": "-5",
                                                 "note": "kept"})
    write_json_atomic(RunPaths(odd_progress).manifest, manifest)

    m = read_manifest(rd)
    assert m["progress"] == {} and m["start_time"] is None and m["heartbeat"] is None and m["config"] == {}
    assert m["status"] == "unknown" and m["name"] is None and m["pid"] is None and m["environment"] is None
    assert read_manifest(odd_progress)["progress"] == {"note": "kept"}
    assert effective_status(m) == "unknown"
    assert {r.name: r.status for r in list_runs(tmp_path)} == {"odd": "unknown", "odd-progress": "finished"}

    result = spintui("runs", "--json", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert {r["name"] for r in json.loads(result.stdout)} == {"odd", "odd-progress"}
    table = spintui("runs", "--runs-dir", str(tmp_path))
    assert table.returncode == 0 and "odd-progress" in table.stdout, table.stderr
    watched = spintui("watch", "--runs-dir", str(tmp_path), "odd-progress")
    assert watched.returncode == 0 and "finished" in watched.stdout, watched.stderr

    from spintui.tui.data import RunTail

    tail = RunTail(rd)
    tail.poll()
    now = time.time()
    assert tail.status(now) == "unknown" and tail.elapsed(now) == 0.0 and tail.eta(now) is None


# ------------------------------------------------------------------------------------------------
# Dead trainers show as crashed at once

WRITER = textwrap.dedent("""
    import sys, time
    from spintui.profiles.run_writer import RunWriter
    w = RunWriter(sys.argv[1])  # claims the run: this pid, its start time, this host
    print("claimed", flush=True)
    step = 0
    while True:
        step += 1
        w.scalar("x", float(step), step)
        time.sleep(0.05)
""")


@pytest.fixture
def start_writer():
    """Starts WRITER processes on runs; kills whatever is left of them after the test."""
    procs = []

    def start(run_dir: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "claimed"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def status_of(runs_dir: Path, name: str) -> str:
    return {r.name: r.status for r in list_runs(runs_dir)}[name]


def wait_for_status(runs_dir: Path, name: str, wanted: str, timeout: float) -> float:
    start = time.monotonic()
    while status_of(runs_dir, name) != wanted:
        assert time.monotonic() - start < timeout, f"{name} still {status_of(runs_dir, name)} after {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def test_a_trainer_killed_with_sigkill_shows_crashed_within_a_second(tmp_path, start_writer):
    from spintui.tui.data import RunTail

    rd = create_run(tmp_path, kind="train", name="victim", algo="sac", env="Pendulum-v1", seed=0)
    proc = start_writer(rd)
    tail = RunTail(rd)
    tail.poll()
    assert status_of(tmp_path, "victim") == "running" and tail.status() == "running"
    assert read_manifest(rd)["pid"] == proc.pid
    watcher = subprocess.Popen([sys.executable, "-m", "spintui", "watch", "--runs-dir", str(tmp_path), "victim"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert "run victim" in watcher.stdout.readline()  # the headless follower is up
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait()
        assert wait_for_status(tmp_path, "victim", "crashed", timeout=1.0) < 1.0
        assert tail.status() == "crashed"  # what the dashboard shows
        rows = {r["name"]: r for r in json.loads(spintui("runs", "--json", "--runs-dir", str(tmp_path)).stdout)}
        assert rows["victim"]["status"] == "crashed"
        out, err = watcher.communicate(timeout=10)
        # polled every 0.5 s; the rest is the watcher exiting (the heartbeat rule alone takes 30 s)
        assert time.monotonic() - killed < 5.0
        assert "crashed" in out, (out, err)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_a_zombie_or_a_reused_pid_is_not_the_trainer(tmp_path):
    rd = create_run(tmp_path, kind="train", name="run", algo="sac", env="Pendulum-v1", seed=0)
    m = read_manifest(rd)
    m.update(pid=os.getpid(), pid_start_time=process_start_time(), host=host_name())
    assert effective_status(m) == "running"
    m["pid_start_time"] -= 100.0  # this pid now belongs to another process than the one that claimed
    assert effective_status(m) == "crashed"
    m.update(pid=2**40, pid_start_time=time.time())  # no such pid can exist
    assert effective_status(m) == "crashed"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_time(child.pid)
    deadline = time.monotonic() + 30
    while _state(child.pid) != "Z":  # exited but not reaped yet: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.02)
    m.update(pid=child.pid, pid_start_time=started)
    assert effective_status(m) == "crashed"
    child.wait()
    assert effective_status(m) == "crashed"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def test_a_run_on_another_host_goes_by_its_heartbeat(tmp_path):
    rd = create_run(tmp_path, kind="train", name="remote", algo="sac", env="Pendulum-v1", seed=0)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that does not exist here
    m = read_manifest(rd)
    m.update(host="gpu-node-7", pid=gone.pid, pid_start_time=time.time() - 5, heartbeat=time.time())
    write_json_atomic(RunPaths(rd).manifest, m)
    assert status_of(tmp_path, "remote") == "running"
    rows = {r["name"]: r for r in json.loads(spintui("runs", "--json", "--runs-dir", str(tmp_path)).stdout)}
    assert rows["remote"]["status"] == "running"
    assert effective_status(m, now=time.time() + 31) == "crashed"  # a stale heartbeat still means crashed
    m["host"] = host_name()
    assert effective_status(m) == "crashed"  # the same manifest on this host: the pid is gone


CREATOR = textwrap.dedent("""
    import sys
    from spintui.profiles.store import create_run
    print(create_run(sys.argv[1], kind="train", name="race", algo="sac", env="Pendulum-v1", seed=0))
""")


def test_a_run_whose_creator_exited_before_the_trainer_claimed_it_is_not_crashed(tmp_path, start_writer):
    # `spintui train` creates the run with its own pid, starts the trainer and may exit (detach)
    # before the trainer has imported torch and claimed the run.
    creator = subprocess.run([sys.executable, "-c", CREATOR, str(tmp_path)], capture_output=True, text=True,
                             check=True)
    rd = Path(creator.stdout.strip())
    m = read_manifest(rd)
    assert m["pid"] != os.getpid() and m["pid_start_time"] is None
    assert status_of(tmp_path, "race") == "running"
    time.sleep(1.2)
    assert status_of(tmp_path, "race") == "running"
    rows = {r["name"]: r for r in json.loads(spintui("runs", "--json", "--runs-dir", str(tmp_path)).stdout)}
    assert rows["race"]["status"] == "running"
    assert effective_status(m, now=m["heartbeat"] + 31) == "crashed"  # never claimed: the heartbeat rule
    proc = start_writer(rd)  # the trainer claims it
    assert status_of(tmp_path, "race") == "running" and read_manifest(rd)["pid"] == proc.pid
    assert read_manifest(rd)["pid_start_time"] is not None
    proc.kill()
    proc.wait()
    assert wait_for_status(tmp_path, "race", "crashed", timeout=1.0) < 1.0


# What torch.distributed.run does for rank 0 here: start the worker, and on its death tear down
# (after a while) and exit non-zero.
TORCHRUN = ("import subprocess, sys, time; subprocess.call([sys.executable, '-c', sys.argv[1], sys.argv[2]]); "
            "time.sleep(1.5); sys.exit(1)")
LAUNCHER = textwrap.dedent("""
    import sys
    import spintui.algos.launch as launch
    torchrun, writer = sys.argv[2], sys.argv[3]
    launch.torchrun_command = lambda run_dir, nproc: [sys.executable, "-c", torchrun, writer, str(run_dir)]
    sys.exit(launch.run_data_parallel(sys.argv[1], 2))
""")


def test_a_live_data_parallel_run_is_running_and_its_dead_rank_zero_crashed(tmp_path):
    from rich.console import Console

    from spintui.tui.follow import follow_run

    rd = create_run(tmp_path, kind="train", name="dp", algo="ppo", env="CartPole-v1", seed=0)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(rd), TORCHRUN, WRITER],
                                stdout=subprocess.PIPE, text=True)
    seen = {}
    rank0 = None

    def kill_rank0():
        os.kill(rank0, signal.SIGKILL)
        seen["crashed_after"] = wait_for_status(tmp_path, "dp", "crashed", timeout=1.0)

    try:
        assert launcher.stdout.readline().strip() == "claimed"  # rank 0, the launcher's grandchild
        rank0 = read_manifest(rd)["pid"]
        assert rank0 not in (launcher.pid, os.getpid())
        time.sleep(1.2)
        assert status_of(tmp_path, "dp") == "running"
        killer = threading.Timer(0.5, kill_rank0)
        killer.start()
        # `spintui train --headless` following its launcher: rank 0 dies while the launcher lives on;
        # the follower waits for the launcher to record why and reports a failure, not a crash.
        status = follow_run(rd, launcher, console=Console(record=True, width=200), stop_on_interrupt=False)
        killer.join()
        assert seen["crashed_after"] < 1.0
        assert status == "failed"
        m = read_manifest(rd)
        assert m["status"] == "failed" and "exited with code 1" in m["error"]
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
        if rank0 is not None and _state(rank0) not in ("?", "Z"):
            os.kill(rank0, signal.SIGKILL)  # killing the launcher leaves its grandchild
