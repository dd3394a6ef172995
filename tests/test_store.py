"""The run directory contract: write, read back, incremental tail, atomic manifest, crash status."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from spintui.errors import RunError
from spintui.profiles import run_writer
from spintui.profiles.records import SCALAR_SIZE
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.runs import list_runs, resolve_run
from spintui.profiles.store import RunPaths, create_run, effective_status, read_manifest, request_stop


def make_run(tmp_path, **kw):
    defaults = dict(kind="train", algo="sac", env="Pendulum-v1", seed=3, config={"gamma": 0.99})
    defaults.update(kw)
    return create_run(tmp_path, **defaults)


def test_run_name_and_manifest_fields(tmp_path):
    run = make_run(tmp_path)
    assert run.name.endswith("_sac_Pendulum-v1_s3")
    m = read_manifest(run)
    for key in ("kind", "algo", "env", "config", "seed", "argv", "host", "pid", "start_time", "versions",
                "status", "heartbeat"):
        assert key in m, key
    assert m["status"] == "running" and m["config"] == {"gamma": 0.99}
    assert m["versions"]["python"] and m["versions"]["spintui"]


def test_create_never_reuses_a_directory(tmp_path):
    a = make_run(tmp_path, name="same")
    b = make_run(tmp_path, name="same")
    assert a != b and a.name == "same" and b.name == "same-2"


def test_write_then_read_everything_back(tmp_path):
    run = make_run(tmp_path)
    with RunWriter(run, heartbeat=False) as w:
        for step in range(500):
            w.scalars({"LossQ": step * 0.5, "LossPi": -step}, step)
        w.episode(200, -812.5, 200)
        w.episode(400, -300.0, 200, test=True)
        w.epoch(1, 4000, {"AverageEpRet": -812.5, "LossQ": float("nan")})
        w.event("hello")
        w.set_progress(step=4000, total_steps=8000, last_return=-812.5)
    update = RunReader(run).poll()
    assert update.manifest["status"] == "finished"
    assert update.manifest["progress"] == {"step": 4000, "total_steps": 8000, "last_return": -812.5}
    kinds = [r["kind"] for r in update.records]
    assert kinds == ["episode", "episode", "epoch", "event"]
    assert update.records[1]["test"] is True
    assert update.records[2]["stats"]["LossQ"] is None  # NaN stays readable JSON
    q = update.scalars["LossQ"]
    assert len(q) == 500 and q.steps[-1] == 499 and q.values[-1] == pytest.approx(249.5)
    assert np.all(update.scalars["LossPi"].values == -np.arange(500))
    progress = RunPaths(run).progress.read_text().splitlines()
    assert progress[0].split("\t") == ["Epoch", "AverageEpRet", "LossQ"]


def test_incremental_tail_returns_only_new_records(tmp_path):
    run = make_run(tmp_path)
    w = RunWriter(run, heartbeat=False)
    reader = RunReader(run)
    reader.poll()
    w.scalar("x", 1.0, 1)
    w.episode(1, 5.0, 1)
    w.flush()
    first = reader.poll()
    assert len(first.scalars["x"]) == 1 and len(first.records) == 1
    assert not reader.poll()  # nothing new
    w.scalar("x", 2.0, 2)
    w.scalar("y", 3.0, 2)  # a new key appears after the first poll
    w.flush()
    second = reader.poll()
    assert second.scalars["x"].values.tolist() == [2.0]
    assert second.scalars["y"].values.tolist() == [3.0]
    assert second.records == []
    w.close()


def test_reader_skips_torn_and_garbage_lines(tmp_path):
    run = make_run(tmp_path)
    with RunWriter(run, heartbeat=False) as w:
        w.event("one")
    with open(RunPaths(run).metrics, "ab") as f:
        f.write(b'{"kind":"event","message":"garb\n')  # damaged line in the middle
        f.write(b'{"kind":"event","message":"two"}\n')
        f.write(b'{"kind":"event","mess')  # torn tail: no newline yet
    reader = RunReader(run)
    msgs = [r.get("message") for r in reader.poll().records]
    assert msgs == ["one", "two"]
    # the torn tail is not consumed: when the rest arrives it is read whole
    with open(RunPaths(run).metrics, "ab") as f:
        f.write(b'age":"three"}\n')
    assert [r.get("message") for r in reader.poll().records] == ["three"]


def test_reopening_a_torn_log_keeps_later_records_aligned(tmp_path):
    run = make_run(tmp_path)
    with RunWriter(run, heartbeat=False) as w:
        w.scalar("x", 1.0, 1)
        w.event("before")
    with open(RunPaths(run).metrics, "ab") as f:
        f.write(b'{"kind":"event","message":"tor')
    with open(RunPaths(run).scalars, "ab") as f:
        f.write(b"\x01\x02\x03")  # a partial binary record
    with RunWriter(run, heartbeat=False) as w:  # e.g. a resumed run
        w.scalar("x", 2.0, 2)
        w.event("after")
    update = RunReader(run).poll()
    assert [r["message"] for r in update.records if r["kind"] == "event"] == ["before", "after"]
    assert update.scalars["x"].values.tolist() == [1.0, 2.0]
    assert os.path.getsize(RunPaths(run).scalars) % SCALAR_SIZE == 0


def test_zero_filled_binary_block_is_ignored(tmp_path):
    run = make_run(tmp_path)
    with RunWriter(run, heartbeat=False) as w:
        w.scalar("x", 1.0, 1)
    with open(RunPaths(run).scalars, "ab") as f:
        f.write(b"\0" * SCALAR_SIZE * 4)  # what a lost page on a network filesystem looks like
    with RunWriter(run, heartbeat=False) as w:
        w.scalar("x", 2.0, 2)
    assert RunReader(run).poll().scalars["x"].values.tolist() == [1.0, 2.0]


def test_manifest_is_replaced_atomically_under_concurrent_reads(tmp_path):
    run = make_run(tmp_path)
    w = RunWriter(run, heartbeat=False)
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                json.loads(RunPaths(run).manifest.read_text())
            except ValueError as exc:  # a half-written manifest
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        w.set_progress(step=i, blob="x" * (i * 50))
        w.update_manifest(note=i)
    stop.set()
    t.join()
    w.close()
    assert errors == []
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


def test_heartbeat_and_crashed_status(tmp_path):
    run = make_run(tmp_path)
    m = read_manifest(run)
    now = m["heartbeat"]
    assert effective_status(m, now=now + 5) == "running"
    assert effective_status(m, now=now + 31) == "crashed"
    m["status"] = "finished"
    assert effective_status(m, now=now + 1e6) == "finished"


def test_background_thread_flushes_and_beats(tmp_path, monkeypatch):
    monkeypatch.setattr(run_writer, "HEARTBEAT_INTERVAL_S", 0.2)
    monkeypatch.setattr(run_writer, "FLUSH_INTERVAL_S", 0.2)
    run = make_run(tmp_path)
    w = RunWriter(run)
    first_beat = read_manifest(run)["heartbeat"]
    w.scalar("x", 1.0, 1)
    reader = RunReader(run)
    deadline = time.time() + 5
    got = None
    while time.time() < deadline:
        got = reader.poll().scalars.get("x")
        if got is not None:
            break
        time.sleep(0.05)
    assert got is not None, "buffered record was not flushed by the background thread"
    while time.time() < deadline and read_manifest(run)["heartbeat"] == first_beat:
        time.sleep(0.05)
    assert read_manifest(run)["heartbeat"] > first_beat
    request_stop(run)
    while time.time() < deadline and not w.stop_requested:
        time.sleep(0.05)
    assert w.stop_requested
    w.close("stopped")
    assert read_manifest(run)["status"] == "stopped"


def test_writer_context_marks_failures(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(RuntimeError):
        with RunWriter(run, heartbeat=False):
            raise RuntimeError("boom")
    m = read_manifest(run)
    assert m["status"] == "failed" and "boom" in m["error"]


def test_resolve_by_path_name_and_latest(tmp_path):
    a = make_run(tmp_path, name="first")
    time.sleep(0.01)
    b = make_run(tmp_path, name="second")
    assert resolve_run("latest", tmp_path) == b
    assert resolve_run("first", tmp_path) == a
    assert resolve_run(str(a), tmp_path) == a
    with pytest.raises(RunError, match="did you mean first"):
        resolve_run("firts", tmp_path)
    with pytest.raises(RunError, match="no runs"):
        resolve_run("latest", tmp_path / "empty")
    assert [r.name for r in list_runs(tmp_path)] == ["first", "second"]


def test_not_a_run(tmp_path):
    with pytest.raises(RunError, match="not a spintui run"):
        RunReader(tmp_path)
    RunPaths(tmp_path).manifest.write_text("{not json")
    with pytest.raises(RunError, match="damaged: run.json is not valid JSON"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("n_keys", [1, 5, 40])
def test_many_series_split_correctly(tmp_path, n_keys):
    run = make_run(tmp_path)
    with RunWriter(run, heartbeat=False) as w:
        for step in range(300):
            w.scalars({f"k{j}": step * 1000 + j for j in range(n_keys)}, step)
    scalars = RunReader(run).poll().scalars
    assert sorted(scalars) == sorted(f"k{j}" for j in range(n_keys))
    for j in range(n_keys):
        s = scalars[f"k{j}"]
        assert s.steps.tolist() == list(range(300))
        assert s.values.tolist() == [step * 1000 + j for step in range(300)]
        s.values += 1  # arrays are the caller's own, writable


def test_run_paths_are_the_documented_layout(tmp_path):
    # These names are the contract with other tools (progress.txt is what Spinning Up's plotter reads).
    paths = RunPaths(str(tmp_path))
    assert paths.root == tmp_path
    assert {name: getattr(paths, name).relative_to(tmp_path).as_posix() for name in (
        "manifest", "metrics", "scalars", "progress", "output_log", "checkpoints", "latest_checkpoint",
        "control", "stop_request")} == {
        "manifest": "run.json", "metrics": "metrics.jsonl", "scalars": "scalars.bin", "progress": "progress.txt",
        "output_log": "output.log", "checkpoints": "checkpoints", "latest_checkpoint": "checkpoints/latest.pt",
        "control": "control", "stop_request": "control/stop"}
    with pytest.raises(AttributeError):
        paths.root = tmp_path / "elsewhere"
