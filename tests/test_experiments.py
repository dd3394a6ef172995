"""Experiments end to end: a grid from the command line becomes one experiment of queued runs that a
detached scheduler runs N at a time; bad grids are refused before anything exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spintui.profiles.experiments import experiment_status, read_experiment, run_statuses
from spintui.profiles.store import read_manifest

UNTHREADED = ["--env", "Pendulum-v1", "--steps-per-epoch", "100", "--num-test-episodes", "1",
              "--max-ep-len", "50", "--hidden-sizes", "16,16", "--start-steps", "50", "--update-after", "50"]
SHORT = ["--threads", "1", *UNTHREADED]


def test_a_seed_and_gamma_grid_runs_as_one_experiment(tmp_path, spintui):
    out = spintui("train", "sac", *UNTHREADED, "--steps", "200", "--seed", "0,1", "--gamma", "0.98,0.99",
                  "--parallel", "2", "--name", "grid", "--headless", runs_dir=tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    exp_dir = tmp_path / "runs" / "grid"
    data = read_experiment(exp_dir)
    assert data["varying"] == ["gamma", "seed"]
    assert data["grid"] == {"gamma": [0.98, 0.99], "seed": [0, 1]}
    assert [r["name"] for r in data["runs"]] == ["gamma0.98_s0", "gamma0.98_s1", "gamma0.99_s0", "gamma0.99_s1"]
    assert data["settings"]["parallel"] == 2
    for run in data["runs"]:
        manifest = read_manifest(exp_dir / run["name"])
        assert manifest["status"] == "finished" and manifest["progress"]["step"] == 200
        assert manifest["config"]["gamma"] == run["values"]["gamma"]
        assert manifest["config"]["seed"] == run["values"]["seed"] and manifest["experiment"] == "grid"
        assert manifest["config"]["threads"] == max(1, (os.cpu_count() or 1) // 2)  # the cores shared by 2
    assert experiment_status(exp_dir) == "finished"
    assert out.stdout.count(": finished at step 200") == 4 and "grid: finished (4 finished)" in out.stdout


def test_runs_without_threads_share_the_cores_and_a_run_of_its_own_takes_torchs_choice(tmp_path, spintui, monkeypatch):
    from spintui.algos.config import make_config
    from spintui.tui.experiment_command import share_cores

    cores = os.cpu_count() or 1
    configs = [make_config("sac", {"env": "Pendulum-v1", "seed": s}) for s in range(3)]
    configs.append(make_config("sac", {"env": "Pendulum-v1", "threads": 3}))
    assert [c.threads for c in share_cores(configs, 1, ray=False)] == [cores] * 3 + [3]
    assert [c.threads for c in share_cores(configs, 2 * cores, ray=False)] == [1] * 3 + [3]
    assert [c.threads for c in share_cores(configs, 1, ray=True)] == [1] * 3 + [3]

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    torch_choice = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    out = spintui("train", "td3", *UNTHREADED, "--steps", "100", "--name", "alone", "--headless",
                  runs_dir=tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    events = (tmp_path / "runs" / "alone" / "metrics.jsonl").read_text()
    assert f"torch threads {torch_choice}," in events


def test_runs_wait_queued_and_ctrl_c_stops_every_run_cleanly(tmp_path):
    cmd = [sys.executable, "-m", "spintui", "train", "sac", *SHORT, "--steps", "100000", "--seed", "0,1,2",
           "--parallel", "1", "--name", "long", "--headless"]
    env = dict(os.environ, SPINTUI_RUNS_DIR=str(tmp_path / "runs"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exp_dir = tmp_path / "runs" / "long"
    deadline = time.monotonic() + 60
    statuses = {}
    while time.monotonic() < deadline:
        if exp_dir.is_dir() and (exp_dir / "experiment.json").exists():
            statuses = run_statuses(exp_dir)
            if list(statuses.values()).count("running") == 1:
                break
        time.sleep(0.2)
    assert sorted(statuses.values()) == ["queued", "queued", "running"], statuses
    time.sleep(2)  # let the first run get going
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    statuses = run_statuses(exp_dir)
    assert sorted(statuses.values()) == ["queued", "queued", "stopped"], (statuses, err)
    stopped = next(name for name, status in statuses.items() if status == "stopped")
    assert (exp_dir / stopped / "checkpoints" / "latest.pt").is_file()
    assert experiment_status(exp_dir) == "stopped"


@pytest.mark.parametrize("args, fragment", [
    (["--seed", "0,,1"], "--seed: empty value"),
    (["--hidden-sizes", "64,64;"], "--hidden-sizes: empty value"),
    (["--gamma", "0.9,1.5"], "--gamma must be a number in [0, 1], got '1.5'"),
    (["--seed", "0,1", "--name", "a,b"], "--name takes one value"),
    (["--seed", "0,1", "--config", "a.toml,b.toml"], "--config takes one value"),
    (["--seed", "0,1,2", "--max-runs", "2"], "the grid has 3 runs, more than --max-runs 2"),
    (["--seed", "0", "--parallel", "2"], "--parallel applies to experiments"),
    (["--gama", "0.9,0.99"], "No such option: --gama"),
    (["--seed", "0,1", "--runs-dir", "a,b"], "--runs-dir takes one value"),
    (["--seed", "0,1", "--ray", "head"], "--ray must be auto or HOST:PORT of a Ray head, got 'head'"),
    (["--seed", "0,1", "--ray", "127.0.0.1:1"], "--ray 127.0.0.1:1: no Ray head answers there"),
])
def test_bad_grids_are_refused_before_anything_exists(args, fragment, tmp_path, spintui):
    spintui("train", "sac", "--env", "Pendulum-v1", *args, "--headless", runs_dir=tmp_path / "runs"
            ).assert_one_line_error(2, fragment)
    assert not (tmp_path / "runs").exists()


def test_a_grid_file_varies_list_valued_options(tmp_path, spintui):
    grid = tmp_path / "grid.toml"
    grid.write_text("hidden_sizes = [[8], [16, 16]]\nseed = [5]\n")
    out = spintui("train", "sac", *SHORT[:-6], "--steps", "100", "--start-steps", "50", "--update-after", "50",
                  "--grid", str(grid), "--name", "g", "--headless", runs_dir=tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    data = read_experiment(tmp_path / "runs" / "g")
    assert [r["name"] for r in data["runs"]] == ["hidden-sizes8", "hidden-sizes16x16"]
    configs = [read_manifest(tmp_path / "runs" / "g" / r["name"])["config"] for r in data["runs"]]
    assert [c["hidden_sizes"] for c in configs] == [[8], [16, 16]] and {c["seed"] for c in configs} == {5}
    recorded = json.loads((tmp_path / "runs" / "g" / "experiment.json").read_text())["runs"]
    assert [r["status"] for r in recorded] == ["finished", "finished"]
