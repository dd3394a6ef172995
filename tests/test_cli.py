"""The CLI: one-line errors with the right exit codes, `spintui runs`, fast start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest, write_json_atomic

def test_help_lists_commands(spintui):
    result = spintui("--help")
    assert result.returncode == 0
    for command in ("train", "profile", "watch", "runs", "eval"):
        assert command in result.stdout


def test_version(spintui):
    from spintui import __version__

    assert spintui("--version").stdout.strip() == f"spintui {__version__}"


@pytest.mark.parametrize(
    "args, code, fragments",
    [
        (["bogus"], 2, ["No such command", "train", "runs"]),
        (["train", "nope"], 2, ["sac", "ppo"]),
        (["runs", "--jsn"], 2, ["--jsn"]),
        (["train", "sac", "--env", "Pendulum-v1", "--gamma", "abc"], 2, ["--gamma", "abc"]),
        (["train", "sac", "--env", "Pendulum-v1", "--gamma", "3"], 2, ["--gamma", "in [0, 1]", "3"]),
        (["train", "sac", "--env", "Pendulum-v1", "--device", "tpu"], 2, ["--device must be one of auto, cpu, cuda, got 'tpu'"]),
        (["train", "sac", "--env", "Pendulum-v1", "--hidden-sizes", "a,b"], 2, ["hidden-sizes"]),
        (["train", "sac", "--env", "Pendulm-v1"], 2, ["unknown environment", "Pendulum-v1"]),
        (["train", "sac", "--env", "CartPole-v1"], 2,
         ["sac needs a continuous (Box) action space; CartPole-v1 has Discrete(2); try ppo"]),
        (["train", "sac"], 2, ["--env is required"]),
        (["train", "sac", "--env", "Pendulum-v1", "--config", "/nonexistent.toml"], 2, ["not found"]),
        (["runs", "--runs-dir", "/nonexistent/runs"], 1, ["does not exist"]),
    ],
)
def test_user_mistakes_are_one_line(args, code, fragments, tmp_path, spintui):
    result = spintui(*args, "--runs-dir", str(tmp_path)) if args[0] == "train" else spintui(*args)
    result.assert_one_line_error(code, *fragments)
    if args[0] == "train":
        assert not any(tmp_path.iterdir()), "a rejected command must not create a run"


def test_bad_config_key_names_accepted_keys(tmp_path, spintui):
    cfg = tmp_path / "c.toml"
    cfg.write_text('gama = 0.9\n')
    spintui("train", "sac", "--env", "Pendulum-v1", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs")
            ).assert_one_line_error(2, "gamma", "accepted")


def test_config_file_and_cli_precedence():
    from spintui.tui.train_command import resolve_train_config

    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write('env = "Pendulum-v1"\ngamma = 0.9\nbatch-size = 64\nhidden_sizes = [32, 32]\n')
    cfg = resolve_train_config("sac", {"gamma": 0.95}, f.name)
    os.unlink(f.name)
    assert (cfg.env, cfg.gamma, cfg.batch_size, cfg.hidden_sizes) == ("Pendulum-v1", 0.95, 64, (32, 32))
    assert cfg.polyak == 0.995  # untouched default


def test_runs_on_empty_dir(tmp_path, spintui):
    result = spintui("runs", "--runs-dir", str(tmp_path))
    assert result.returncode == 0 and "No runs" in result.stdout
    result = spintui("runs", "--json", "--runs-dir", str(tmp_path))
    assert json.loads(result.stdout) == []


def test_runs_shows_live_finished_and_crashed(tmp_path, spintui):
    live = create_run(tmp_path, kind="train", name="live", algo="sac", env="Pendulum-v1", seed=0)
    w = RunWriter(live, heartbeat=False)
    w.set_progress(step=1200, total_steps=20000, last_return=-512.25)
    w.flush()
    w.update_manifest()
    done = create_run(tmp_path, kind="train", name="done", algo="ppo", env="CartPole-v1", seed=1)
    RunWriter(done, heartbeat=False).close("finished")
    crashed = create_run(tmp_path, kind="profile", name="crashed", benchmark="blocksparse")
    m = read_manifest(crashed)
    m["heartbeat"] = time.time() - 120
    write_json_atomic(RunPaths(crashed).manifest, m)

    result = spintui("runs", "--json", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["live"]["status"] == "running" and rows["live"]["steps"] == 1200
    assert rows["live"]["last_return"] == -512.25
    assert rows["done"]["status"] == "finished" and rows["done"]["algo"] == "ppo"
    assert rows["crashed"]["status"] == "crashed" and rows["crashed"]["kind"] == "profile"

    table = spintui("runs", "--runs-dir", str(tmp_path), env={"SPINTUI_RUNS_DIR": "/ignored"})
    assert table.returncode == 0
    for fragment in ("live", "done", "crashed", "running", "finished", "1,200/20,000", "-512.2"):
        assert fragment in table.stdout, table.stdout
    via_env = spintui("runs", "--json", env={"SPINTUI_RUNS_DIR": str(tmp_path)})
    assert len(json.loads(via_env.stdout)) == 3
    w.close()


def test_cli_startup_imports_nothing_heavy():
    code = ("import sys; sys.argv=['spintui','runs','--json','--runs-dir','/tmp/spintui-none'];"
            "from spintui.tui.cli import main\ntry: main()\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('torch','textual','gymnasium','numpy','triton') if m in sys.modules];"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1:] in ([], [""]), result.stdout


def test_debug_shows_traceback(spintui):
    result = spintui("--debug", "runs", "--runs-dir", "/nonexistent/runs")
    assert result.returncode != 0 and "Traceback" in result.stderr
