"""Custom environments: `--env package.module:EnvName-v0` and `--env-kwargs key=value,...` (or a
[env_kwargs] TOML table) reach the environment in every process and are kept in run.json; mistakes
are one line, exit 2, and create nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import DRIFT_LENGTH, spintui_env

from spintui.algos.config import config_from_manifest, make_config
from spintui.algos.grid import expand
from spintui.algos.registry import algorithm
from spintui.errors import ConfigError
from spintui.options import format_mapping, parse_mapping
from spintui.profiles.store import read_manifest


@pytest.mark.parametrize("text, expected", [
    ("length=7", {"length": 7}),
    ("g=9.81, on=true,off=False,name=rgb_array", {"g": 9.81, "on": True, "off": False, "name": "rgb_array"}),
    ('label="a,b",code=\'7\',big=1e3,neg=-2', {"label": "a,b", "code": "7", "big": 1000.0, "neg": -2}),
    ("", {}),
])
def test_key_value_text_parses_to_typed_values_and_back(text, expected):
    parsed = parse_mapping(text)
    assert parsed == expected and [type(v) for v in parsed.values()] == [type(v) for v in expected.values()]
    assert parse_mapping(format_mapping(parsed)) == parsed


@pytest.mark.parametrize("value", ["length", "length=", "=3", "a=1,a=2", "a=inf", "a=1,,b=2",
                                   {"a": [1, 2]}, {"a": None}, ["a=1"]])
def test_bad_key_value_settings_are_refused_naming_the_option(value):
    with pytest.raises(ConfigError, match="--env-kwargs must be key=value pairs"):
        make_config("sac", {"env": "Pendulum-v1", "env_kwargs": value})


def test_a_toml_table_the_command_line_and_run_json_give_the_same_config(tmp_path):
    from spintui.tui.train_command import resolve_train_config

    toml = tmp_path / "c.toml"
    toml.write_text('env = "Pendulum-v1"\n[env_kwargs]\ng = 9.0\nmode = "x"\n')
    from_toml = resolve_train_config("sac", {}, toml)
    from_cli = make_config("sac", {"env": "Pendulum-v1", "env_kwargs": "g=9.0,mode=x"})
    assert from_toml.env_kwargs == from_cli.env_kwargs == {"g": 9.0, "mode": "x"}
    manifest = {"algo": "sac", "config": json.loads(json.dumps({"env": "Pendulum-v1", "env_kwargs": {"g": 9.0}}))}
    assert config_from_manifest(manifest).env_kwargs == {"g": 9.0}


def test_env_kwargs_and_tensorboard_keep_one_value_in_a_grid(tmp_path):
    varying, points = expand(algorithm("sac").config, {"seed": "0,1", "env_kwargs": "a=1,b=2",
                                                      "tensorboard": str(tmp_path / "x,y")})
    assert varying == ["seed"] and len(points) == 2
    assert all(p.settings["env_kwargs"] == {"a": 1, "b": 2} for p in points)
    with pytest.raises(ConfigError, match="--tensorboard takes one value; it cannot vary in a grid"):
        expand(algorithm("sac").config, {}, {"tensorboard": ["a", "b"]})


def test_a_run_on_a_custom_env_keeps_id_and_kwargs_for_every_later_command(drift_run):
    runs_dir, run_dir, _ = drift_run
    manifest = read_manifest(run_dir)
    assert manifest["env"] == "envs_for_tests:Drift-v0"
    assert manifest["config"]["env_kwargs"] == {"length": DRIFT_LENGTH}
    lengths = [json.loads(line)["length"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if '"kind":"episode"' in line]
    assert lengths and set(lengths) == {DRIFT_LENGTH}  # training and test episodes
    spinup_config = json.loads((run_dir / "config.json").read_text())  # written by the trainer
    assert spinup_config["exp_name"].startswith("sac_Drift-v0_") and spinup_config["env_kwargs"] == {"length": 7}
    result = subprocess.run([sys.executable, "-m", "spintui", "eval", "drift", "--runs-dir", str(runs_dir),
                             "--episodes", "2", "--json"], capture_output=True, text=True, env=spintui_env(),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lengths"] == [DRIFT_LENGTH, DRIFT_LENGTH]


@pytest.mark.parametrize("kwargs, code, expected", [
    ("length=3", 0, [3, 3]),  # over the run's own length=7
    ("bogus=1", 2, "envs_for_tests:Drift-v0 does not take --env-kwargs length=7,bogus=1"),
])
def test_eval_can_change_the_environments_kwargs(drift_run, kwargs, code, expected):
    runs_dir, _, _ = drift_run
    result = subprocess.run([sys.executable, "-m", "spintui", "eval", "drift", "--runs-dir", str(runs_dir),
                             "--episodes", "2", "--json", "--env-kwargs", kwargs], capture_output=True, text=True,
                            env=spintui_env(), timeout=120)
    assert result.returncode == code, result.stderr
    if code == 0:
        assert json.loads(result.stdout)["lengths"] == expected
    else:
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--env", "no_such_module_for_spintui:Drift-v0"], "cannot import module 'no_such_module_for_spintui'"),
    (["--env", "envs_for_tests:Nope-v0"], "unknown environment 'Nope-v0' (module 'envs_for_tests' does not "
                                          "register it)"),
    (["--env", "envs_for_tests:Drift-v0", "--env-kwargs", "bogus=1"],
     "envs_for_tests:Drift-v0 does not take --env-kwargs bogus=1"),
    (["--env", "Pendulum-v1", "--env-kwargs", "g"], "--env-kwargs must be key=value pairs"),
])
def test_custom_env_mistakes_are_one_line_exit_2_and_create_nothing(args, fragment, tmp_path):
    runs_dir = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "spintui", "train", "sac", *args, "--runs-dir", str(runs_dir),
                             "--headless"], capture_output=True, text=True, env=spintui_env(), timeout=120)
    err = result.stderr.strip()
    assert result.returncode == 2, (result.stdout, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err and fragment in err, err
    assert not runs_dir.exists()
