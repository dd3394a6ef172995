"""Runs named on a command line that reads several: runs and experiments (by path, name, glob or
`latest`) and, for `plot`, TensorBoard log directories (event files) and Spinning Up output
directories (a progress.txt, usually a config.json); profiles/foreign_logs.py tells them apart.

An experiment stands for its runs. A directory that is neither a run nor an experiment is searched
(as Spinning Up's plot.py does) for runs, experiments and, where asked for, TensorBoard and
Spinning Up runs.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spintui.errors import RunError
from spintui.profiles.experiments import EXPERIMENT, experiment_run_dirs, read_experiment
from spintui.profiles.foreign_logs import FOREIGN, source_kind
from spintui.profiles.runs import GLOB_CHARS, resolve_run
from spintui.profiles.store import MANIFEST, DamagedRunError, read_manifest


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "run" (a spintui run), "tensorboard" (event files) or "spinningup" (a progress.txt directory)
    label: str  # experiment/run for a run of an experiment, else the directory's name

    @property
    def label_path(self) -> Path:
        return Path(*self.label.split("/"))


def run_label(run_dir: Path, manifest: dict | None = None) -> str:
    manifest = read_manifest(run_dir) if manifest is None else manifest
    experiment = manifest.get("experiment")
    return f"{experiment}/{run_dir.name}" if isinstance(experiment, str) and experiment else run_dir.name


def _classify(path: Path, foreign: bool, warn: Callable[[str], None]) -> list[Source]:
    if os.path.lexists(path / MANIFEST):
        try:
            return [Source(path, "run", run_label(path))]
        except DamagedRunError as exc:
            warn(f"skipping damaged run {path}: {exc.reason}")
            return []
    if (path / EXPERIMENT).is_file():
        out = []
        for run_dir in experiment_run_dirs(path, read_experiment(path)):
            out += _classify(run_dir, foreign, warn)
        return out
    kind = source_kind(path) if foreign else None
    if kind in FOREIGN:
        return [Source(path, kind, path.name)]
    if path.is_dir():  # search below, as Spinning Up's plot.py does
        out = []
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            out += _classify(child, foreign, warn)
        return out
    return []


def resolve_sources(specs: list[str], runs_dir: Path | str, *, foreign: bool = False,
                    warn: Callable[[str], None] | None = None) -> list[Source]:
    """Every run the specs name, in order, each once; with `foreign`, TensorBoard and Spinning Up
    runs too. RunError (one line) for a spec that names nothing readable."""
    runs_dir = Path(runs_dir)
    warn = warn or (lambda message: None)
    what = "runs, experiments, TensorBoard log directories or Spinning Up output directories" if foreign \
        else "runs or experiments"
    out: list[Source] = []
    seen: set[Path] = set()
    for spec in specs:
        if any(ch in spec for ch in GLOB_CHARS):
            paths = [Path(p) for p in sorted({*glob.glob(os.path.expanduser(spec)), *glob.glob(str(runs_dir / spec))})]
        elif spec == "latest":
            paths = [resolve_run(spec, runs_dir, kind="train")]
        else:
            as_path, by_name = Path(spec).expanduser(), runs_dir / spec
            paths = [as_path if as_path.exists() else by_name]
            if not paths[0].exists():
                resolve_run(spec, runs_dir)  # its one-line error names the closest runs
        found = [s for p in paths for s in _classify(p, foreign, warn)]
        if not found:
            raise RunError(f"{spec!r} names no {what}")
        for source in found:
            key = source.path.resolve()
            if key not in seen:
                seen.add(key)
                out.append(source)
    return out
