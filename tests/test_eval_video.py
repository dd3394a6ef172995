"""`spintui eval RUN --video DIR`: an MP4 per episode of the deterministic policy, with no display,
and the same returns as without video; `--render` without a display is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import spintui_env


def eval_json(runs_dir, *extra, env=None):
    result = subprocess.run([sys.executable, "-m", "spintui", "eval", "drift", "--runs-dir", str(runs_dir),
                             "--episodes", "2", "--seed", "3", "--json", *extra], capture_output=True, text=True,
                            env=env or spintui_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_video_records_each_episode_without_changing_returns(drift_run, tmp_path):
    runs_dir, _, _ = drift_run
    env = {k: v for k, v in spintui_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    plain, _ = eval_json(runs_dir, env=env)
    recorded, stderr = eval_json(runs_dir, "--video", str(tmp_path / "videos"), env=env)
    assert recorded["returns"] == plain["returns"] and recorded["lengths"] == plain["lengths"]
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["drift-episode-0.mp4", "drift-episode-1.mp4"]
    assert all(v.stat().st_size > 0 for v in videos)
    assert recorded["videos"] == [str(v) for v in videos]
    assert stderr.strip() == ""  # no complaint from SDL about a missing display


def test_render_without_a_display_suggests_video(drift_run):
    runs_dir, _, _ = drift_run
    env = {k: v for k, v in spintui_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-m", "spintui", "eval", "drift", "--runs-dir", str(runs_dir),
                             "--render"], capture_output=True, text=True, env=env, timeout=120)
    err = result.stderr.strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1 and "--video DIR" in err, err
