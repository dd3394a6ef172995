"""Experiments: several runs of one command, made from a grid of option values, stored together.

An experiment is a directory under the runs directory::

    2026-12-02_101500_sac_Pendulum-v1/
        experiment.json     the grid, the keys that vary, each run's name and point, the scheduler
        gamma0.98_s0/       an ordinary run directory per point (run.json, metrics.jsonl, ...)
        gamma0.98_s1/
        ...

Every run exists from the start with status `queued`, so listings, viewers and `--resume` see the
whole experiment before the scheduler has started anything. experiment.json is replaced atomically
like run.json; each run's own status stays in its run.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from spintui.errors import RunError
from spintui.profiles.provenance import host_name
from spintui.profiles.store import create_run, effective_status, read_manifest, write_json_atomic

EXPERIMENT = "experiment.json"
FINAL = ("finished", "failed", "stopped", "crashed", "damaged")


def is_experiment(path: Path | str) -> bool:
    return (Path(path) / EXPERIMENT).is_file()


def read_experiment(exp_dir: Path | str) -> dict:
    path = Path(exp_dir) / EXPERIMENT
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{exp_dir} is not a spintui experiment (no {EXPERIMENT})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise RunError(f"{path} is damaged: not an experiment description")
    return data


def write_experiment(exp_dir: Path | str, data: dict) -> None:
    write_json_atomic(Path(exp_dir) / EXPERIMENT, data)


def create_experiment(runs_dir: Path | str, name: str, *, algo: str, varying: list[str], grid: dict[str, list],
                      points: list[dict[str, Any]], argv: list[str], settings: dict[str, Any]) -> Path:
    """Make the experiment directory with one queued run per point.

    Each point is ``{"name", "env", "seed", "config", "values"}``: the run's directory name, its
    resolved config and the values of the varying keys. Refuses a name that exists."""
    exp_dir = Path(runs_dir) / name
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    try:
        exp_dir.mkdir()
    except FileExistsError:
        raise RunError(f"{exp_dir} exists already; pick another --name") from None
    runs = []
    for point in points:
        run_dir = create_run(exp_dir, kind="train", name=point["name"], algo=algo, env=point["env"],
                             seed=point["seed"], config=point["config"], argv=argv,
                             extra={"status": "queued", "pid": None, "experiment": name,
                                    "point": point["values"]})
        runs.append({"name": run_dir.name, "path": run_dir.name, "values": point["values"], "status": "queued"})
    now = time.time()
    write_experiment(exp_dir, {
        "format": 1, "kind": "experiment", "name": name, "algo": algo, "varying": varying, "grid": grid,
        "runs": runs, "argv": argv, "settings": settings, "created": now, "scheduler": None,
    })
    return exp_dir


def experiment_run_dirs(exp_dir: Path | str, data: dict | None = None) -> list[Path]:
    data = read_experiment(exp_dir) if data is None else data
    return [Path(exp_dir) / r["name"] for r in data["runs"] if isinstance(r, dict) and "name" in r]


def run_statuses(exp_dir: Path | str, data: dict | None = None, now: float | None = None) -> dict[str, str]:
    """Each run's status as viewers show it (a run whose run.json is unreadable is `damaged`)."""
    out = {}
    for run_dir in experiment_run_dirs(exp_dir, data):
        try:
            out[run_dir.name] = effective_status(read_manifest(run_dir), now)
        except RunError:
            out[run_dir.name] = "damaged"
    return out


def experiment_status(exp_dir: Path | str, data: dict | None = None, now: float | None = None,
                      statuses: dict[str, str] | None = None) -> str:
    """running while its scheduler lives; else finished when every run finished, stopped or failed
    when any did, queued when nothing started. `statuses` are the runs' own (run_statuses) when the
    caller has them already."""
    data = read_experiment(exp_dir) if data is None else data
    statuses = list((run_statuses(exp_dir, data, now) if statuses is None else statuses).values())
    if scheduler_alive(data):
        return "running"
    if statuses and all(s == "finished" for s in statuses):
        return "finished"
    if any(s in ("running",) for s in statuses):
        return "running"
    if any(s in ("failed", "crashed", "damaged") for s in statuses):
        return "failed"
    if all(s == "queued" for s in statuses):
        return "queued"
    return "stopped"


def scheduler_alive(data: dict) -> bool:
    """Whether the experiment's scheduler process still runs (known only on its own host)."""
    sched = data.get("scheduler") or {}
    pid, host = sched.get("pid"), sched.get("host")
    if not isinstance(pid, int) or sched.get("ended"):
        return False
    if host != host_name():
        return time.time() - float(sched.get("heartbeat") or 0) < 30.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def common_experiment(run_dirs: list[Path | str]) -> Path | None:
    """The experiment that holds every one of `run_dirs`, if they all are in the same one."""
    parents = {Path(p).resolve().parent for p in run_dirs}
    if len(parents) != 1:
        return None
    parent = Path(run_dirs[0]).parent
    return parent if is_experiment(parent) else None


def list_experiments(runs_dir: Path | str) -> list[Path]:
    """Experiment directories directly under `runs_dir`, oldest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [child for child in runs_dir.iterdir() if (child / EXPERIMENT).is_file()]
    return sorted(found, key=lambda p: (_created(p), p.name))


def _created(exp_dir: Path) -> float:
    try:
        return float(read_experiment(exp_dir).get("created") or 0.0)
    except (RunError, TypeError, ValueError):
        return 0.0
