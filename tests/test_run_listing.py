"""Listing and watching runs: damaged manifests never hide other runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spintui.errors import RunError, UsageError
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.runs import list_runs, resolve_run, resolve_watch_runs
from spintui.profiles.store import (
    DamagedRunError,
    RunPaths,
    create_run,
    effective_status,
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
