"""Resuming runs (`spintui train --resume RUN|EXPERIMENT`): checkpoints that continue bitwise, logs in
which every epoch appears once after a SIGKILL, the replay buffer, one-line refusals that change
nothing, and experiments whose unfinished runs are taken up again. Real trainers, small budgets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spintui.algos import native
from spintui.algos.config import config_to_dict, make_config
from spintui.algos.core import load_checkpoint
from spintui.algos.launch import train_run
from spintui.algos.replay import ReplayBuffer, load_buffer_file, saves_buffer
from spintui.profiles.experiments import read_experiment, run_statuses
from spintui.profiles.records import iter_jsonl
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest, write_json_atomic
from stopping import stopped_after_first_epoch

torch.set_num_threads(1)

# Episodes of 100 steps end exactly at each 200-step epoch, so a resumed off-policy run draws the
# very episode the uninterrupted one does next.
OFF_POLICY = {"env": "Pendulum-v1", "threads": 1, "steps": 400, "steps_per_epoch": 200, "start_steps": 100,
              "update_after": 100, "num_test_episodes": 1, "hidden_sizes": "32,32", "max_ep_len": 100,
              "replay_size": 5000}
ON_POLICY = {"env": "CartPole-v1", "device": "cpu", "threads": 1, "steps": 400, "steps_per_epoch": 200,
             "hidden_sizes": "16,16", "train_v_iters": 5}


def new_run(root: Path, algo: str, name: str, **values) -> Path:
    base = OFF_POLICY if algo in ("ddpg", "td3", "sac") else ON_POLICY
    cfg = make_config(algo, {**base, **values})
    return create_run(root, kind="train", name=name, algo=algo, env=cfg.env, seed=cfg.seed, config=config_to_dict(cfg))


def copy_run(run_dir: Path, name: str) -> Path:
    target = run_dir.parent / name
    shutil.copytree(run_dir, target)
    return target


def parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    modules = load_checkpoint(run_dir)["modules"]
    return {f"{m}.{k}": v for m, state in modules.items() for k, v in state.items()}


def same_parameters(a: Path, b: Path) -> bool:
    pa, pb = parameters(a), parameters(b)
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def records(run_dir: Path, kind: str | None = None) -> list[dict]:
    """What a viewer reads (superseded records dropped)."""
    recs = RunReader(run_dir).poll().records
    return [r for r in recs if kind is None or r.get("kind") == kind]


def raw_records(run_dir: Path) -> list[dict]:
    """Everything in metrics.jsonl, superseded records included."""
    return list(iter_jsonl(RunPaths(run_dir).metrics.read_bytes()))


def progress_epochs(run_dir: Path) -> list[int]:
    lines = RunPaths(run_dir).progress.read_text().splitlines()
    assert lines[0].startswith("Epoch\t")
    return [int(line.split("\t")[0]) for line in lines[1:]]


def files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# The replay buffer


def test_replay_buffer_round_trips(tmp_path):
    cpu = torch.device("cpu")
    buffer = ReplayBuffer(3, 1, 50, cpu, stage_rows=8)
    rng = np.random.default_rng(0)
    for i in range(77):  # wraps around the ring; the last rows are still staged in host memory
        buffer.store(rng.normal(size=3), rng.normal(size=1), float(i), rng.normal(size=3), i % 7 == 0)
    torch.save(buffer.state(), tmp_path / "replay.pt")
    load_buffer_file(tmp_path / "replay.pt", mmap=True)  # the quick check --resume makes
    again = ReplayBuffer(3, 1, 50, cpu)
    again.load_state(load_buffer_file(tmp_path / "replay.pt"))
    assert torch.equal(again.data, buffer.data) and (again.ptr, again.count) == (buffer.ptr, buffer.count) == (27, 50)
    torch.manual_seed(1)
    first = buffer.sample_block(2, 5)
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again.sample_block(2, 5)))

    partial = ReplayBuffer(3, 1, 50, cpu)
    for i in range(30):
        partial.store(np.full(3, i), np.ones(1), 1.0, np.zeros(3), False)
    state = partial.state()
    assert state["rows"].shape == (30, partial.width)  # only the rows filled so far are saved
    refilled = ReplayBuffer(3, 1, 50, cpu)
    refilled.load_state(state)
    assert torch.equal(refilled.data, partial.data) and len(refilled) == 30
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer(3, 2, 50, cpu).load_state(state)


def test_save_buffer_auto_saves_buffers_under_one_gib():
    assert saves_buffer("auto", SimpleNamespace(capacity_bytes=(1 << 30) - 1))
    assert not saves_buffer("auto", SimpleNamespace(capacity_bytes=1 << 30))
    assert saves_buffer("always", SimpleNamespace(capacity_bytes=1 << 40))
    assert not saves_buffer("never", SimpleNamespace(capacity_bytes=1))


# --------------------------------------------------------------------------------------------------
# Bitwise continuation


@pytest.mark.parametrize("update", [
    pytest.param("native", marks=pytest.mark.skipif(native._compiler() is None, reason="no C compiler")),
    "torch",
])
def test_resumed_sac_continues_bitwise_as_the_uninterrupted_run(tmp_path, monkeypatch, update):
    values = {"update": update, "alpha": "auto"}  # the learned temperature is restored too
    whole = new_run(tmp_path, "sac", "whole", **values)
    assert train_run(whole) == "finished"
    cut = new_run(tmp_path, "sac", "cut", **values)
    stopped_after_first_epoch(monkeypatch, cut)
    checkpoint = load_checkpoint(cut)
    assert (checkpoint["step"], checkpoint["epoch"]) == (200, 1) and checkpoint["replay"]["rows"] == 200
    first, second = copy_run(cut, "first"), copy_run(cut, "second")
    assert train_run(first) == "finished" and train_run(second) == "finished"
    assert load_checkpoint(first)["step"] == 400
    assert same_parameters(first, second)  # two resumes of one checkpoint
    assert same_parameters(first, whole)  # and the run that was never stopped
    assert [(e["epoch"], e["step"]) for e in records(first, "epoch")] == [(1, 200), (2, 400)]
    assert progress_epochs(first) == [1, 2]


def test_two_resumes_of_a_ppo_checkpoint_match_bitwise(tmp_path, monkeypatch):
    cut = new_run(tmp_path, "ppo", "cut")
    stopped_after_first_epoch(monkeypatch, cut)
    first, second, other = (copy_run(cut, name) for name in ("first", "second", "other"))
    # The control: the same checkpoint with another torch generator state must not give the same run.
    checkpoint = load_checkpoint(other)
    checkpoint["rng"]["torch"] = torch.Generator().manual_seed(12345).get_state()
    torch.save(checkpoint, RunPaths(other).latest_checkpoint)
    for run_dir in (first, second, other):
        assert train_run(run_dir) == "finished"
    assert load_checkpoint(first)["epoch"] == 2
    assert same_parameters(first, second)
    assert not same_parameters(first, other)
    assert [(e["epoch"], e["step"]) for e in records(first, "epoch")] == [(1, 200), (2, 400)]
    assert progress_epochs(first) == [1, 2]


# --------------------------------------------------------------------------------------------------
# What viewers read after a resume


def test_readers_drop_what_a_resume_supersedes(tmp_path):
    from spintui.tui.data import RunTail
    from spintui.tui.plot_data import return_title

    run_dir = create_run(tmp_path, kind="train", name="r", algo="sac", env="Pendulum-v1", seed=0)
    killed = RunWriter(run_dir, heartbeat=False)
    for step in range(1, 301):
        killed.scalars({"LossQ": float(step)}, step)
        if step % 50 == 0:
            killed.episode(step, float(step), 50)
        if step % 100 == 0:
            killed.epoch(step // 100, step, {"AverageEpRet": float(step)})
    killed.flush()  # then SIGKILL: never closed, and a torn row in progress.txt
    with open(RunPaths(run_dir).progress, "a") as f:
        f.write("4\t12")
    watching = RunTail(run_dir)
    watching.poll()
    assert list(watching.episodes.steps) == [50, 100, 150, 200, 250, 300]

    resumed = RunWriter(run_dir, heartbeat=False)
    resumed.resume(200, 2)  # the checkpoint was at step 200, after epoch 2
    assert progress_epochs(run_dir) == [1, 2]
    for step in range(201, 401):
        resumed.scalars({"LossQ": -float(step)}, step)
        if step % 50 == 0:
            resumed.episode(step, -float(step), 50)
        if step % 100 == 0:
            resumed.epoch(step // 100, step, {"AverageEpRet": -float(step)})
    resumed.close("finished")

    update = RunReader(run_dir).poll()
    assert [(r["step"], r["epoch"]) for r in update.resumes] == [(200, 2)]
    epochs = [(r["epoch"], r["stats"]["AverageEpRet"]) for r in update.records if r["kind"] == "epoch"]
    assert epochs == [(1, 100.0), (2, 200.0), (3, -300.0), (4, -400.0)]
    episodes = [(r["step"], r["ret"]) for r in update.records if r["kind"] == "episode"]
    assert episodes == [(50, 50.0), (100, 100.0), (150, 150.0), (200, 200.0), (250, -250.0), (300, -300.0),
                        (350, -350.0), (400, -400.0)]
    loss = update.scalars["LossQ"]
    assert list(loss.steps) == list(range(1, 401))
    assert np.all(loss.values[:200] > 0) and np.all(loss.values[200:] < 0)
    assert progress_epochs(run_dir) == [1, 2, 3, 4]

    watching.poll()  # a viewer that had polled before the resume drops what it held past step 200
    assert list(watching.episodes.steps) == [50, 100, 150, 200, 250, 300, 350, 400]
    assert list(watching.episodes.values[-3:]) == [-300.0, -350.0, -400.0]
    assert list(watching.scalars["LossQ"].steps) == list(range(1, 401))
    assert list(watching.epoch_stats["AverageEpRet"].values) == [100.0, 200.0, -300.0, -400.0]
    assert return_title([watching]) == "Return · resumed at step 200"


# --------------------------------------------------------------------------------------------------
# The command line


def test_a_run_killed_mid_epoch_resumes_to_its_total_with_each_epoch_once(tmp_path, spintui):
    runs = tmp_path / "runs"
    # Spinning Up's 256x256 networks: epochs of a second or so, long enough to be caught in the middle
    cmd = [sys.executable, "-m", "spintui", "train", "sac", "--env", "Pendulum-v1", "--steps", "3000",
           "--steps-per-epoch", "600", "--start-steps", "300", "--update-after", "100", "--num-test-episodes", "1",
           "--threads", "1", "--replay-size", "20000", "--headless", "--name", "k"]
    env = {**os.environ, "SPINTUI_RUNS_DIR": str(runs)}
    follower = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = runs / "k"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # mid-epoch: an episode logged past the last epoch's end
        recs = raw_records(run_dir) if RunPaths(run_dir).metrics.exists() else []
        ends = [r["step"] for r in recs if r.get("kind") == "epoch"]
        if ends and any(r.get("kind") == "episode" and r["step"] > ends[-1] for r in recs):
            break
        time.sleep(0.05)
    manifest = read_manifest(run_dir)
    assert manifest["pid_start_time"] is not None  # claimed by the trainer, not the CLI
    os.kill(manifest["pid"], signal.SIGKILL)
    follower.wait(timeout=60)
    resumed_from = load_checkpoint(run_dir)["step"]
    assert resumed_from < 3000
    assert any(r.get("step", 0) > resumed_from for r in raw_records(run_dir))  # to be superseded

    out = spintui("train", "--resume", "k", "--headless", runs_dir=runs)
    assert out.returncode == 0, out.stderr + RunPaths(run_dir).output_log.read_text()[-2000:]
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "finished" and manifest["progress"]["step"] == 3000
    assert load_checkpoint(run_dir)["step"] == 3000
    assert progress_epochs(run_dir) == [1, 2, 3, 4, 5]
    assert [(e["epoch"], e["step"]) for e in records(run_dir, "epoch")] == [(i, 600 * i) for i in range(1, 6)]
    steps = [e["step"] for e in records(run_dir, "episode") if not e["test"]]
    assert steps == sorted(set(steps))  # nothing logged twice past the checkpoint
    loss = RunReader(run_dir).poll().scalars["LossQ"]
    assert np.all(np.diff(loss.steps) > 0)
    messages = [r["message"] for r in records(run_dir, "event")]
    assert any("replay buffer" in m and "saved with each checkpoint" in m for m in messages)
    assert any(f"resumed from the checkpoint at step {resumed_from:,}" in m and "fresh episode" in m
               for m in messages)
    assert [r["step"] for r in records(run_dir, "resume")] == [resumed_from]
    assert sorted(p.name for p in RunPaths(run_dir).checkpoints.iterdir()) == ["latest.pt", "replay-3000.pt"]


@pytest.fixture(scope="module")
def stopped_sac_run(tmp_path_factory):
    """A SAC run stopped cleanly after its first epoch (checkpoint and replay buffer at step 200)."""
    runs = tmp_path_factory.mktemp("refusals") / "runs"
    run_dir = new_run(runs, "sac", "base")
    with pytest.MonkeyPatch.context() as patch:
        stopped_after_first_epoch(patch, run_dir)
    return run_dir


def _set_status(run_dir: Path, status: str, **fields) -> None:
    manifest = read_manifest(run_dir)
    manifest.update(status=status, **fields)
    write_json_atomic(RunPaths(run_dir).manifest, manifest)


def _damage_checkpoint(run_dir: Path) -> None:
    RunPaths(run_dir).latest_checkpoint.write_bytes(b"not a checkpoint")


def _old_checkpoint(run_dir: Path) -> None:
    checkpoint = load_checkpoint(run_dir)
    for key in ("format", "rng", "envs", "elapsed", "replay"):
        checkpoint.pop(key, None)
    torch.save(checkpoint, RunPaths(run_dir).latest_checkpoint)


def _no_checkpoint(run_dir: Path) -> None:
    shutil.rmtree(RunPaths(run_dir).checkpoints)


def _lost_buffer(run_dir: Path) -> None:
    for path in RunPaths(run_dir).checkpoints.glob("replay-*.pt"):
        path.unlink()


@pytest.mark.parametrize("args, prepare, code, fragments", [
    (["train", "sac", "--resume", "{run}", "--gamma", "0.9"], None, 2,
     ["--gamma 0.9 contradicts", "(--gamma 0.99)", "leave --gamma out"]),
    (["train", "--resume", "{run}", "--hidden-sizes", "64,64"], None, 2, ["No such option: --hidden-sizes"]),
    (["train", "sac", "--resume", "{run}", "--hidden-sizes", "64,64"], None, 2, ["--hidden-sizes 64,64 contradicts"]),
    (["train", "td3", "--resume", "{run}"], None, 2, ["is a sac run, not td3"]),
    (["train", "sac", "--resume", "{run}", "--name", "other"], None, 2, ["--name cannot be combined with --resume"]),
    (["train", "--resume", "{run}"], lambda d: _set_status(d, "finished"), 1, ["finished at step", "nothing to resume"]),
    (["train", "--resume", "{run}"], _no_checkpoint, 1, ["has no checkpoint to resume from"]),
    (["train", "--resume", "{run}"], _damage_checkpoint, 1, ["checkpoint", "is damaged"]),
    (["train", "--resume", "{run}"], _old_checkpoint, 1, ["predates resuming", "spintui eval` still reads it"]),
    (["train", "--resume", "{run}"], _lost_buffer, 1, ["replay buffer", "is missing"]),
    (["train", "--resume", "{run}"], lambda d: RunPaths(d).manifest.write_text("{"), 1,
     ["is damaged", "run.json is not valid JSON"]),
    (["train", "--resume", "{run}"], lambda d: _set_status(d, "running", pid=os.getpid(), heartbeat=time.time(),
                                                             pid_start_time=None), 1, ["is running", "stop it"]),
])
def test_resume_refusals_are_one_line_and_change_nothing(stopped_sac_run, spintui_here, args, prepare, code,
                                                         fragments):
    run_dir = copy_run(stopped_sac_run, f"case{len(list(stopped_sac_run.parent.iterdir()))}")
    if prepare is not None:
        prepare(run_dir)
    before = files(run_dir)
    out = spintui_here(*[a.format(run=run_dir) for a in args])
    out.assert_one_line_error(code, *fragments)
    assert files(run_dir) == before


def test_old_checkpoints_still_load_for_eval(stopped_sac_run):
    from spintui.algos.evaluate import evaluate

    run_dir = copy_run(stopped_sac_run, "old")
    _old_checkpoint(run_dir)
    result = evaluate(run_dir, episodes=1)
    assert result["checkpoint_step"] == 200 and len(result["returns"]) == 1


def test_resume_experiment_finishes_a_partly_stopped_experiment(tmp_path, spintui):
    runs = tmp_path / "runs"
    short = ["--env", "Pendulum-v1", "--threads", "1", "--steps", "1000", "--steps-per-epoch", "200",
             "--num-test-episodes", "1", "--max-ep-len", "50", "--hidden-sizes", "16,16", "--start-steps", "50",
             "--update-after", "50", "--replay-size", "2000"]
    cmd = [sys.executable, "-m", "spintui", "train", "sac", *short, "--seed", "0,1,2", "--parallel", "1",
           "--name", "part", "--headless"]
    proc = subprocess.Popen(cmd, env={**os.environ, "SPINTUI_RUNS_DIR": str(runs)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    exp_dir = runs / "part"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the first run finished, the second has a checkpoint
        statuses = run_statuses(exp_dir) if (exp_dir / "experiment.json").exists() else {}
        running = [n for n, s in statuses.items() if s == "running"]
        if list(statuses.values()).count("finished") == 1 and running and \
                RunPaths(exp_dir / running[0]).latest_checkpoint.exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    statuses = run_statuses(exp_dir)
    assert sorted(statuses.values()) == ["finished", "queued", "stopped"], (statuses, err)
    finished = next(n for n, s in statuses.items() if s == "finished")
    stopped = next(n for n, s in statuses.items() if s == "stopped")
    untouched = files(exp_dir / finished)

    out = spintui("train", "--resume", "part", "--headless", runs_dir=runs)
    assert out.returncode == 0, out.stderr
    assert "resuming 1 run(s) from checkpoints, starting 1 from the beginning; 1 finished" in out.stderr
    assert set(run_statuses(exp_dir).values()) == {"finished"}
    assert files(exp_dir / finished) == untouched
    assert len(records(exp_dir / stopped, "resume")) == 1
    for run in read_experiment(exp_dir)["runs"]:
        run_dir = exp_dir / run["name"]
        assert read_manifest(run_dir)["progress"]["step"] == 1000
        assert progress_epochs(run_dir) == [1, 2, 3, 4, 5]
        assert [e["epoch"] for e in records(run_dir, "epoch")] == [1, 2, 3, 4, 5]
    out = spintui("train", "--resume", "part", runs_dir=runs)
    out.assert_one_line_error(1, "all 3 runs finished", "nothing to resume")
