"""Finding runs: the runs directory, listing, and addressing a run by path, name, glob or `latest`.

A run inside an experiment (profiles/experiments.py) is addressed as `EXP/RUN`, its path relative
to the runs directory, or by its path; `spintui watch` also takes a whole experiment by name, path
or glob and gets its runs. `latest` is the newest run that has started (a queued run only when no
run has), inside experiments or not. `watch` also takes TensorBoard and Spinning Up runs by path
(profiles/foreign_logs.py).

A run whose run.json cannot be read never hides the others: listings show it with status
"damaged" and the reason, globs and experiments skip it with a warning, and naming it is a
one-line error. So is naming an experiment whose experiment.json cannot be read.
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
from spintui.profiles.experiments import experiment_run_dirs, is_experiment, read_experiment
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
    experiment: str | None = None  # the name of the experiment it belongs to, if it is inside one

    @property
    def name(self) -> str:
        """The run's address under the runs directory: `RUN`, or `EXP/RUN` inside an experiment."""
        return f"{self.experiment}/{self.path.name}" if self.experiment else self.path.name

    @property
    def start_time(self) -> float:
        start = self.manifest.get("start_time")
        return float(start) if isinstance(start, (int, float)) else 0.0


def _has_manifest(run_dir: Path) -> bool:
    """run.json is there, readable or not (a broken link or a directory counts)."""
    return os.path.lexists(RunPaths(run_dir).manifest)


def list_runs(runs_dir: Path | str, now: float | None = None, experiments: bool = False) -> list[RunInfo]:
    """Runs under `runs_dir`, oldest first (damaged runs, which have no start time, first).

    With `experiments`, the runs inside experiment directories too (named `EXP/RUN`)."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UsageError(f"runs directory {runs_dir} is not a directory")
    if not runs_dir.is_dir():
        return []
    now = time.time() if now is None else now
    out = _runs_in(runs_dir, now, None)
    if experiments:
        for child in _children(runs_dir):
            if is_experiment(child):
                out += _runs_in(child, now, child.name)
    out.sort(key=lambda r: (r.start_time, r.name))
    return out


def _children(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError as exc:
        raise RunError(f"cannot list runs directory {directory}: {exc.strerror or exc}") from None


def _runs_in(directory: Path, now: float, experiment: str | None) -> list[RunInfo]:
    out = []
    for child in _children(directory):
        if not _has_manifest(child):
            continue
        try:
            manifest = read_manifest(child)
        except DamagedRunError as exc:
            out.append(RunInfo(child, {}, DAMAGED, exc.reason, experiment))
            continue
        except RunError:  # removed while listing
            continue
        out.append(RunInfo(child, manifest, effective_status(manifest, now), None, experiment))
    return out


def _checked(run_dir: Path) -> Path:
    read_manifest(run_dir)  # raises DamagedRunError, a one-line error, for a damaged run
    return run_dir


def latest_run(runs_dir: Path | str, kind: str | None = None) -> Path:
    """The newest run by start time, inside experiments too; a queued run only when no run has started.

    `kind` restricts it to train or profile runs; it never picks a damaged run."""
    runs = [r for r in list_runs(runs_dir, experiments=True)
            if r.status != DAMAGED and (kind is None or r.manifest.get("kind") == kind)]
    started = [r for r in runs if r.status != "queued"]
    if not runs:
        what = f"{kind} runs" if kind else "runs"
        raise RunError(f"no {what} in {runs_dir} (set --runs-dir or {RUNS_DIR_ENV})")
    return (started or runs)[-1].path


def find_experiment(spec: str, runs_dir: Path | str) -> Path | None:
    """The experiment directory `spec` names (a path, or a name under `runs_dir`), else None."""
    for candidate in (Path(spec).expanduser(), Path(runs_dir) / spec):
        if is_experiment(candidate):
            return candidate
    return None


def resolve_experiment(spec: str, runs_dir: Path | str) -> Path:
    """The experiment directory `spec` names; else a one-line error naming the closest experiments."""
    found = find_experiment(spec, runs_dir)
    if found is not None:
        return found
    names = [p.name for p in _experiments(Path(runs_dir))]
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else (f"; experiments: {', '.join(sorted(names))}"
                                                               if names else "; there is none")
    raise RunError(f"no experiment {spec!r} in {runs_dir}{hint}")


def resolve_run(spec: str, runs_dir: Path | str, kind: str | None = None) -> Path:
    """A run directory from a path, a name under `runs_dir` (`EXP/RUN` inside an experiment), or
    `latest` (see latest_run). Naming an experiment is an error that says how to name one of its runs.
    """
    runs_dir = Path(runs_dir)
    if spec == "latest":
        return latest_run(runs_dir, kind)
    as_path = Path(spec).expanduser()
    if _has_manifest(as_path):
        return _checked(as_path)
    by_name = runs_dir / spec
    if _has_manifest(by_name):
        return _checked(by_name)
    exp_dir = find_experiment(spec, runs_dir)
    if exp_dir is not None:
        names = [p.name for p in experiment_run_dirs(exp_dir)]  # a damaged experiment.json: its own error
        example = f", e.g. {exp_dir.name}/{names[0]}" if names else ""
        raise RunError(f"{spec} is an experiment of {len(names)} runs; name one of them as EXPERIMENT/RUN{example}")
    if as_path.exists():
        raise RunError(f"{spec} is not a spintui run (no {MANIFEST})")
    names = [r.name for r in list_runs(runs_dir, experiments=True)] + [p.name for p in _experiments(runs_dir)]
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; give a run directory, a run name or 'latest'"
    raise RunError(f"no run {spec!r} in {runs_dir}{hint}")


def _experiments(runs_dir: Path) -> list[Path]:
    return [child for child in _children(runs_dir) if is_experiment(child)] if runs_dir.is_dir() else []


@dataclass
class WatchTarget:
    """What `spintui watch` was asked for: the run directories, and the experiments they came from."""

    runs: list[Path]
    experiments: list[Path]


def resolve_watch(specs: list[str], runs_dir: Path | str, warn: Callable[[str], None] | None = None) -> WatchTarget:
    """Run directories from paths, names (`EXP/RUN` too), `latest`, experiments (by path or name:
    all their runs) or globs of any of these (as paths, or as names under runs_dir). A path that is
    none of these stands for the TensorBoard and Spinning Up runs in or below it
    (profiles/foreign_logs.py); where there are none, it is an error that says what was expected.

    Globs and experiments skip damaged runs, telling `warn` about each, unless nothing else is
    left (then it is an error, as is a damaged run or experiment named outright).
    """
    runs_dir = Path(runs_dir)
    target = WatchTarget([], [])
    for spec in specs:
        skipped: list[str] = []
        if _is_glob(spec):
            found = _glob_runs(spec, runs_dir, target, skipped)
        elif _names_run(spec, runs_dir) or find_experiment(spec, runs_dir) is None:
            found = _foreign_or_run(spec, runs_dir)
        else:
            exp_dir = find_experiment(spec, runs_dir)
            found = _readable(experiment_run_dirs(exp_dir), skipped)  # a damaged experiment.json raises
            if not found:
                raise RunError(f"experiment {exp_dir.name} has no readable runs"
                               + (f"; damaged: {_first(skipped)}" if skipped else ""))
            target.experiments.append(exp_dir)
        for message in skipped if warn is not None else ():
            warn(f"skipping damaged {message}")
        for path in found:
            if all(path.resolve() != p.resolve() for p in target.runs):
                target.runs.append(path)
    return target


def _foreign_or_run(spec: str, runs_dir: Path) -> list[Path]:
    """The TensorBoard and Spinning Up runs a path holds; else the run `spec` names (a run, `latest`,
    or the error that says what is wrong)."""
    as_path = Path(spec).expanduser()
    if _names_run(spec, runs_dir) or not as_path.exists():
        return [resolve_run(spec, runs_dir)]
    from spintui.profiles.foreign_logs import KINDS_TEXT, LOOKED_FOR, find_foreign  # numpy: not for `runs`

    found = find_foreign(as_path)
    if not found:
        raise RunError(f"{spec} is not {KINDS_TEXT} (found no {LOOKED_FOR} in it or below it)")
    return found


def _names_run(spec: str, runs_dir: Path) -> bool:
    return spec == "latest" or _has_manifest(Path(spec).expanduser()) or _has_manifest(runs_dir / spec)


def _glob_runs(spec: str, runs_dir: Path, target: WatchTarget, skipped: list[str]) -> list[Path]:
    """The runs a glob matches: runs themselves, every run of each experiment it matches, and the
    TensorBoard and Spinning Up runs in or below anything else it matches."""
    from spintui.profiles.foreign_logs import find_foreign

    hits = sorted({*glob.glob(os.path.expanduser(spec)), *glob.glob(str(runs_dir / spec))})
    found: list[Path] = []
    for hit in map(Path, hits):
        if _has_manifest(hit):
            found += _readable([hit], skipped)
        elif is_experiment(hit):
            try:
                run_dirs = experiment_run_dirs(hit)
            except RunError as exc:
                skipped.append(f"experiment {hit.name} ({exc})")
                continue
            found += _readable(run_dirs, skipped)
            target.experiments.append(hit)
        else:
            found += find_foreign(hit)
    if not found and skipped:
        raise RunError(f"no readable runs match {spec!r}; damaged: {_first(skipped)}")
    if not found:
        raise RunError(f"no runs match {spec!r} (as a path or a name in {runs_dir})")
    return found


def resolve_watch_runs(specs: list[str], runs_dir: Path | str,
                       warn: Callable[[str], None] | None = None) -> list[Path]:
    """The run directories of resolve_watch."""
    return resolve_watch(specs, runs_dir, warn).runs


def _is_glob(spec: str) -> bool:
    return any(ch in spec for ch in GLOB_CHARS)


def _readable(run_dirs: list[Path], skipped: list[str]) -> list[Path]:
    """The run directories whose run.json can be read; each other one adds a line to `skipped`."""
    found = []
    for run_dir in run_dirs:
        try:
            found.append(_checked(run_dir))
        except RunError as exc:
            skipped.append(f"run {run_dir}: {getattr(exc, 'reason', exc)}")
    return found


def _first(skipped: list[str]) -> str:
    more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
    return skipped[0] + more


def format_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
