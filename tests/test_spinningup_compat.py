"""What Spinning Up's tools read: progress.txt at full precision with integers as integers and late
columns kept, config.json with an exp_name shared by the seeds of one configuration."""

from __future__ import annotations

import json

import numpy as np

from spintui.profiles.config_groups import differing_keys, exp_name, group_by_config, group_labels
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.spinningup import read_progress, write_config_json
from spintui.profiles.store import RunPaths, create_run, read_manifest


def test_progress_keeps_integers_full_precision_and_a_late_column(tmp_path):
    run = create_run(tmp_path, kind="train", name="r", algo="sac", env="Pendulum-v1")
    with RunWriter(run, heartbeat=False) as w:
        w.epoch(1, 4000, {"AverageEpRet": 0.1 + 0.2, "TotalEnvInteracts": 1_000_000, "EpLen": 200.0,
                          "Count": np.int64(3), "LossQ": float("nan")})
        w.epoch(2, 8000, {"AverageEpRet": -1234.5678901234567, "TotalEnvInteracts": 2_000_000, "EpLen": 200.0,
                          "Count": np.int64(4), "LossQ": 1e-12, "AverageTestEpRet": -150.25})
    lines = RunPaths(run).progress.read_text().splitlines()
    assert lines[0].split("\t") == ["Epoch", "AverageEpRet", "TotalEnvInteracts", "EpLen", "Count", "LossQ",
                                    "AverageTestEpRet"]
    assert lines[1].split("\t") == ["1", "0.30000000000000004", "1000000", "200.0", "3", "", ""]
    assert lines[2].split("\t") == ["2", "-1234.5678901234567", "2000000", "200.0", "4", "1e-12", "-150.25"]
    assert not list(run.glob(".progress.txt*"))  # the rewrite left no temporary file
    table = read_progress(RunPaths(run).progress)
    assert table["AverageEpRet"] == [0.1 + 0.2, -1234.5678901234567]
    assert np.isnan(table["AverageTestEpRet"][0]) and table["AverageTestEpRet"][1] == -150.25


def test_a_resumed_run_appends_under_the_header_it_has(tmp_path):
    run = create_run(tmp_path, kind="train", name="r", algo="sac", env="Pendulum-v1")
    with RunWriter(run, heartbeat=False) as w:
        w.epoch(1, 10, {"A": 1.5, "B": 2})
    with RunWriter(run, heartbeat=False) as w:
        w.epoch(2, 20, {"B": 3, "A": 2.5, "C": 0.5})
    assert RunPaths(run).progress.read_text().splitlines() == ["Epoch\tA\tB\tC", "1\t1.5\t2\t", "2\t2.5\t3\t0.5"]


def test_config_json_names_the_configuration_not_the_seed(tmp_path):
    names = []
    for seed, gamma in ((0, 0.99), (1, 0.99), (0, 0.98)):
        config = {"env": "Pendulum-v1", "seed": seed, "gamma": gamma, "tensorboard": f"/tmp/tb{seed}"}
        run = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=seed, config=config)
        data = json.loads(write_config_json(run, read_manifest(run)).read_text())
        assert data["seed"] == seed and data["gamma"] == gamma and data["algo"] == "sac"
        names.append(data["exp_name"])
    assert names[0] == names[1] != names[2] and names[0].startswith("sac_Pendulum-v1_")
    assert exp_name("sac", "pkg.mod:Drift-v0", {}).startswith("sac_Drift-v0_")


def test_grouping_ignores_only_the_seed_and_labels_what_differs():
    configs = [{"algo": "sac", "gamma": 0.99, "seed": 0}, {"algo": "sac", "gamma": 0.98, "seed": 0},
               {"seed": 1, "gamma": 0.99, "algo": "sac"}, {"algo": "td3", "gamma": 0.99, "seed": 2}]
    assert group_by_config(configs) == [[0, 2], [1], [3]]
    firsts = [configs[0], configs[1], configs[3]]
    assert differing_keys(firsts) == ["algo", "gamma"]
    assert group_labels(firsts) == ["algo=sac, gamma=0.99", "algo=sac, gamma=0.98", "algo=td3, gamma=0.99"]
    assert group_labels([{"exp_name": "a"}, {"exp_name": "b"}]) == ["a", "b"]
    assert group_labels([{"algo": "sac", "env": "Pendulum-v1", "gamma": 0.9}]) == ["sac Pendulum-v1"]
