"""Addressing experiments and the runs inside them (`spintui watch EXP`, `EXP/RUN`, `latest`), and
listing them (`spintui runs`, `--all`, `--json`); damaged or unknown experiments are one-line errors."""

from __future__ import annotations

import json

import pytest

from spintui.errors import RunError
from spintui.profiles.experiments import experiment_run_dirs
from spintui.profiles.runs import list_runs, resolve_run, resolve_watch, resolve_watch_runs


def test_an_experiment_is_watched_by_name_path_or_glob(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path)
    runs = experiment_run_dirs(exp)
    for spec in ("exp", str(exp), "ex*", str(tmp_path / "e?p")):
        target = resolve_watch([spec], tmp_path)
        assert target.runs == runs and target.experiments == [exp], spec


def test_a_run_inside_an_experiment_is_exp_slash_run_or_its_path(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path)
    one = exp / "gamma0.98_s1"
    assert resolve_run("exp/gamma0.98_s1", tmp_path) == one
    assert resolve_run(str(one), tmp_path) == one
    target = resolve_watch(["exp/gamma0.98_s1"], tmp_path)
    assert target.runs == [one] and target.experiments == []
    assert resolve_watch_runs(["exp/gamma0.99_*"], tmp_path) == experiment_run_dirs(exp)[3:]
    with pytest.raises(RunError, match=r"exp is an experiment of 6 runs; .* e\.g\. exp/gamma0\.98_s0"):
        resolve_run("exp", tmp_path)  # where one run is wanted (eval)
    with pytest.raises(RunError, match="did you mean exp/gamma0.98_s1"):
        resolve_run("exp/gamma0.98-s1", tmp_path)


def test_latest_is_the_newest_started_run_inside_experiments_too(tmp_path, recorded_experiment, recorded_run):
    recorded_run(tmp_path, name="older", steps=10)
    exp = recorded_experiment(tmp_path, statuses={"gamma0.99_s2": "queued"})  # created after `older`
    assert resolve_run("latest", tmp_path) == exp / "gamma0.99_s1", "a queued run has not started"
    fresh = recorded_experiment(tmp_path / "only-queued", statuses={f"gamma{g}_s{s}": "queued"
                                                                     for g in (0.98, 0.99) for s in (0, 1, 2)})
    assert resolve_run("latest", tmp_path / "only-queued") == fresh / "gamma0.99_s2", "else the newest queued"


def test_damaged_runs_of_an_experiment_are_skipped_with_a_warning(tmp_path, recorded_experiment):
    exp = recorded_experiment(tmp_path)
    (exp / "gamma0.98_s0" / "run.json").write_text("[]")
    warnings = []
    target = resolve_watch(["exp"], tmp_path, warn=warnings.append)
    assert len(target.runs) == 5 and len(warnings) == 1
    assert "gamma0.98_s0" in warnings[0] and "not an object" in warnings[0]


def test_a_damaged_or_unknown_experiment_is_a_one_line_error(tmp_path, recorded_experiment, recorded_run,
                                                               spintui):
    exp = recorded_experiment(tmp_path)
    (exp / "experiment.json").write_text('{"runs": [')
    spintui("watch", "--runs-dir", str(tmp_path), "exp").assert_one_line_error(1, "experiment.json", "cannot read")
    spintui("watch", str(exp)).assert_one_line_error(1, "cannot read")
    spintui("eval", "--runs-dir", str(tmp_path), "exp").assert_one_line_error(1, "cannot read")
    spintui("watch", "--runs-dir", str(tmp_path), "nosuch").assert_one_line_error(1, "no run 'nosuch'")
    (exp / "experiment.json").write_text('{"runs": 3}')
    spintui("watch", "--runs-dir", str(tmp_path), "exp").assert_one_line_error(
        1, "damaged", "not an experiment description")
    spintui("watch", "--runs-dir", str(tmp_path), "e*").assert_one_line_error(
        1, "no readable runs match", "experiment exp")
    recorded_run(tmp_path, name="healthy", steps=10)  # a glob goes on with what it can read
    result = spintui("watch", "--runs-dir", str(tmp_path), "*")
    assert result.returncode == 0 and "finished: 10 steps" in result.stdout, result.stderr
    assert "warning: skipping damaged experiment exp" in result.stderr


# ------------------------------------------------------------------------------------------------
# spintui runs


def test_runs_shows_an_experiment_as_one_line_and_its_runs_with_all(tmp_path, recorded_experiment, recorded_run,
                                                                   spintui):
    recorded_run(tmp_path, name="solo", steps=10)
    recorded_experiment(tmp_path, statuses={"gamma0.99_s2": "queued"})
    result = spintui("runs", "--json", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["solo", "exp"]
    solo, exp = rows
    assert solo["experiment"] is None and solo["kind"] == "train"
    assert (exp["kind"], exp["algo"], exp["env"], exp["status"], exp["runs_done"], exp["runs_total"],
            exp["experiment"]) == ("experiment", "sac", "Pendulum-v1", "stopped", 5, 6, None)
    assert exp["age_s"] is not None and exp["age_s"] >= 0

    every = json.loads(spintui("runs", "--all", "--json", "--runs-dir", str(tmp_path)).stdout)
    names = [r["name"] for r in every]
    assert names[:2] == ["solo", "exp"] and sorted(names[2:]) == sorted(
        f"exp/gamma{g}_s{s}" for g in (0.98, 0.99) for s in (0, 1, 2))
    assert {r["experiment"] for r in every[2:]} == {"exp"}
    assert {r["name"]: r["status"] for r in every}["exp/gamma0.99_s2"] == "queued"

    table = spintui("runs", "--runs-dir", str(tmp_path)).stdout
    line = next(ln for ln in table.splitlines() if "│ exp " in ln)
    assert "experiment" in line and "sac" in line and "stopped" in line and "5/6 runs" in line, table
    assert "exp/gamma" not in table
    assert "exp/gamma0.98_s0" in spintui("runs", "--all", "--runs-dir", str(tmp_path)).stdout


def test_runs_lists_a_damaged_experiment_with_the_reason(tmp_path, recorded_experiment, spintui):
    exp = recorded_experiment(tmp_path)
    (exp / "experiment.json").write_text("[]")
    rows = json.loads(spintui("runs", "--json", "--runs-dir", str(tmp_path)).stdout)
    assert [(r["name"], r["kind"], r["status"]) for r in rows] == [("exp", "experiment", "damaged")]
    assert "not an experiment description" in rows[0]["reason"]
    assert len(list_runs(tmp_path, experiments=True)) == 6, "its runs can still be listed and watched"


def test_runs_of_named_experiments(tmp_path, recorded_experiment, recorded_run, spintui):
    recorded_run(tmp_path, name="solo", steps=10)
    recorded_experiment(tmp_path)
    recorded_experiment(tmp_path, name="other", seeds=(0,))
    rows = json.loads(spintui("runs", "exp", "--all", "--json", "--runs-dir", str(tmp_path)).stdout)
    assert [r["name"] for r in rows][:2] == ["exp", "exp/gamma0.98_s0"] and len(rows) == 7
    assert "solo" not in spintui("runs", str(tmp_path / "other"), "--runs-dir", str(tmp_path)).stdout
    spintui("runs", "exq", "--runs-dir", str(tmp_path)).assert_one_line_error(1, "no experiment 'exq'",
                                                                             "did you mean exp")
    spintui("runs", "solo", "--runs-dir", str(tmp_path)).assert_one_line_error(1, "no experiment 'solo'")
