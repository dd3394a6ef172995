"""Finding runs: the runs directory, listing, and addressing a run by path, name or `latest`."""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from spintui.profiles.store import MANIFEST, RunError, effective_status, read_manifest

RUNS_DIR_ENV = "SPINTUI_RUNS_DIR"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


@dataclass
class RunInfo:
    path: Path
    manifest: dict
    status: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def start_time(self) -> float:
        return float(self.manifest.get("start_time") or 0.0)


def list_runs(runs_dir: Path | str, now: float | None = None) -> list[RunInfo]:
    """Runs under `runs_dir`, oldest first; unreadable entries are skipped."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    now = time.time() if now is None else now
    out = []
    for child in runs_dir.iterdir():
        if not (child / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(child)
        except RunError:
            continue
        out.append(RunInfo(child, manifest, effective_status(manifest, now)))
    out.sort(key=lambda r: (r.start_time, r.name))
    return out


def resolve_run(spec: str, runs_dir: Path | str, kind: str | None = None) -> Path:
    """A run directory from a path, a run name under `runs_dir`, or `latest` (newest start time).

    `kind` restricts `latest` to train or profile runs.
    """
    runs_dir = Path(runs_dir)
    if spec == "latest":
        runs = [r for r in list_runs(runs_dir) if kind is None or r.manifest.get("kind") == kind]
        if not runs:
            what = f"{kind} runs" if kind else "runs"
            raise RunError(f"no {what} in {runs_dir} (set --runs-dir or {RUNS_DIR_ENV})")
        return runs[-1].path
    as_path = Path(spec).expanduser()
    if (as_path / MANIFEST).is_file():
        return as_path
    by_name = runs_dir / spec
    if (by_name / MANIFEST).is_file():
        return by_name
    if as_path.exists():
        raise RunError(f"{spec} is not a spintui run (no {MANIFEST})")
    names = [r.name for r in list_runs(runs_dir)]
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; give a run directory, a run name or 'latest'"
    raise RunError(f"no run {spec!r} in {runs_dir}{hint}")


def format_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
