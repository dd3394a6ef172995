"""Finding runs: the runs directory, listing, and addressing a run by path, name, glob or `latest`.

A run whose run.json cannot be read never hides the others: listings show it with status
"damaged" and the reason, globs skip it with a warning, and naming it is a one-line error.
"""

from __future__ import annotations

import difflib
import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spintui.errors import RunError, UsageError
from spintui.profiles.store import DAMAGED, MANIFEST, DamagedRunError, RunPaths, effective_status, read_manifest

RUNS_DIR_ENV = "SPINTUI_RUNS_DIR"
GLOB_CHARS = "*?["


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


@dataclass
class RunInfo:
    path: Path
    manifest: dict  # normalized (store.read_manifest); empty for a damaged run
    status: str
    reason: str | None = None  # why a damaged run cannot be read

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def start_time(self) -> float:
        start = self.manifest.get("start_time")
        return float(start) if isinstance(start, (int, float)) else 0.0


def _has_manifest(run_dir: Path) -> bool:
    """run.json is there, readable or not (a broken link or a directory counts)."""
    return os.path.lexists(RunPaths(run_dir).manifest)


def list_runs(runs_dir: Path | str, now: float | None = None) -> list[RunInfo]:
    """Runs under `runs_dir`, oldest first (damaged runs, which have no start time, first)."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UsageError(f"runs directory {runs_dir} is not a directory")
    if not runs_dir.is_dir():
        return []
    try:
        children = list(runs_dir.iterdir())
    except OSError as exc:
        raise RunError(f"cannot list runs directory {runs_dir}: {exc.strerror or exc}") from None
    now = time.time() if now is None else now
    out = []
    for child in children:
        if not _has_manifest(child):
            continue
        try:
            manifest = read_manifest(child)
        except DamagedRunError as exc:
            out.append(RunInfo(child, {}, DAMAGED, exc.reason))
            continue
        except RunError:  # removed while listing
            continue
        out.append(RunInfo(child, manifest, effective_status(manifest, now)))
    out.sort(key=lambda r: (r.start_time, r.name))
    return out


def _checked(run_dir: Path) -> Path:
    read_manifest(run_dir)  # raises DamagedRunError, a one-line error, for a damaged run
    return run_dir


def resolve_run(spec: str, runs_dir: Path | str, kind: str | None = None) -> Path:
    """A run directory from a path, a run name under `runs_dir`, or `latest` (newest start time).

    `kind` restricts `latest` to train or profile runs; `latest` never picks a damaged run.
    """
    runs_dir = Path(runs_dir)
    if spec == "latest":
        runs = [r for r in list_runs(runs_dir)
                if r.status != DAMAGED and (kind is None or r.manifest.get("kind") == kind)]
        if not runs:
            what = f"{kind} runs" if kind else "runs"
            raise RunError(f"no {what} in {runs_dir} (set --runs-dir or {RUNS_DIR_ENV})")
        return runs[-1].path
    as_path = Path(spec).expanduser()
    if _has_manifest(as_path):
        return _checked(as_path)
    by_name = runs_dir / spec
    if _has_manifest(by_name):
        return _checked(by_name)
    if as_path.exists():
        raise RunError(f"{spec} is not a spintui run (no {MANIFEST})")
    names = [r.name for r in list_runs(runs_dir)]
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; give a run directory, a run name or 'latest'"
    raise RunError(f"no run {spec!r} in {runs_dir}{hint}")


def resolve_watch_runs(specs: list[str], runs_dir: Path | str,
                       warn: Callable[[str], None] | None = None) -> list[Path]:
    """Run directories from paths, names, `latest` or globs (of paths or of names under runs_dir).

    A glob skips damaged runs, telling `warn` about each, unless nothing else matches (then it is
    an error, as is a damaged run named outright).
    """
    runs_dir = Path(runs_dir)
    out: list[Path] = []
    for spec in specs:
        if any(ch in spec for ch in GLOB_CHARS):
            hits = sorted({*glob.glob(os.path.expanduser(spec)), *glob.glob(str(runs_dir / spec))})
            found, skipped = [], []
            for hit in map(Path, hits):
                if not _has_manifest(hit):
                    continue
                try:
                    found.append(_checked(hit))
                except RunError as exc:
                    skipped.append(f"{hit}: {getattr(exc, 'reason', exc)}")
            if not found and skipped:
                more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
                raise RunError(f"no readable runs match {spec!r}; damaged: {skipped[0]}{more}")
            if not found:
                raise RunError(f"no runs match {spec!r} (as a path or a name in {runs_dir})")
            for message in skipped if warn is not None else ():
                warn(f"skipping damaged run {message}")
        else:
            found = [resolve_run(spec, runs_dir)]
        for path in found:
            if all(path.resolve() != p.resolve() for p in out):
                out.append(path)
    return out


def format_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
