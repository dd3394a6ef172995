"""Experiments on a real Ray cluster: a head on the loopback interface (2 CPUs), a seed grid
submitted through `spintui train --ray`, every run trained by a Ray task and recorded in the runs
directory as a local run would be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray  # noqa: F401  (an optional extra that the test extra installs: this test never skips)

from spintui.profiles.experiments import read_experiment
from spintui.profiles.store import read_manifest

HERE = Path(__file__).resolve().parent


def in_private_network(*args: str, timeout: float = 600) -> dict:
    """tests/ray_experiment_case.py in a network namespace of its own (root and util-linux's unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test starts Ray in a private network namespace: it needs root and unshare")
    out = subprocess.run(["unshare", "--net", sys.executable, str(HERE / "ray_experiment_case.py"), *args],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_seed_grid_runs_on_a_ray_head(tmp_path):
    result = in_private_network(str(tmp_path / "runs"))
    assert result["code"] == 0, result["stderr"]
    exp_dir = tmp_path / "runs" / "on-ray"
    data = read_experiment(exp_dir)
    assert data["settings"]["ray"] == "127.0.0.1:6391" and data["scheduler"]["backend"] == "ray"
    for run in data["runs"]:
        manifest = read_manifest(exp_dir / run["name"])
        assert manifest["status"] == "finished" and manifest["progress"]["step"] == 200
        assert (exp_dir / run["name"] / "checkpoints" / "latest.pt").is_file()
    assert [r["status"] for r in data["runs"]] == ["finished", "finished"]
    assert not list((tmp_path / "runs").glob(".spintui-probe-*")), "the storage probe cleans up after itself"


@pytest.mark.slow
def test_a_run_that_needs_more_cpus_than_any_node_is_refused(tmp_path):
    result = in_private_network(str(tmp_path / "runs"), "--threads", "3")
    assert result["code"] == 2
    err = result["stderr"].strip().splitlines()
    assert len(err) == 1 and "a run needs 3 CPUs on one node" in err[0], result["stderr"]
    assert not (tmp_path / "runs" / "on-ray").exists()
