"""`spintui export RUN|EXPERIMENT... --tensorboard DIR --csv DIR`: runs as TensorBoard event files
and tidy CSV (what goes where: profiles/run_export.py)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spintui.errors import UsageError
from spintui.options import build, option
from spintui.tui.command_options import options_command, runs_dir_option, runs_dir_or_default


@dataclass
class ExportOptions:
    sources: list[str] = option([], "Runs or experiments: paths, names, globs or 'latest'.", argument=True,
                                metavar="RUN|EXPERIMENT...")
    tensorboard: Path | None = option(None, "Write TensorBoard event files, one directory per run: DIR/RUN "
                                      "(DIR/EXPERIMENT/RUN).", metavar="DIR")
    csv: Path | None = option(None, "Write DIR/RUN.csv (series, step, wall_time, value) and DIR/RUN.epochs.csv.",
                              metavar="DIR")
    runs_dir: Path | None = runs_dir_option()


def export(given: dict) -> None:
    """Write runs (or every run of an experiment) as TensorBoard event files and/or CSV."""
    from spintui.profiles.sources import resolve_sources

    opts = build(ExportOptions, given)
    if not opts.sources:
        raise UsageError("give the runs or experiments to export (paths, names, globs or 'latest')")
    if opts.tensorboard is None and opts.csv is None:
        raise UsageError("say where to: --tensorboard DIR, --csv DIR or both")
    if opts.csv is not None and opts.csv.exists() and not opts.csv.is_dir():
        raise UsageError(f"--csv {opts.csv} is a file, not a directory")
    if opts.tensorboard is not None:
        from spintui.profiles.tensorboard_events import require_tensorboard

        require_tensorboard("--tensorboard", opts.tensorboard)
    sources = resolve_sources(opts.sources, runs_dir_or_default(opts.runs_dir),
                              warn=lambda message: print(f"spintui: warning: {message}", file=sys.stderr))
    from spintui.profiles.run_export import export_csv, export_tensorboard

    for source in sources:
        start = time.perf_counter()
        written = []
        if opts.tensorboard is not None:
            points = export_tensorboard(source.path, opts.tensorboard / source.label_path)
            written.append(f"{points:,} points -> {opts.tensorboard / source.label_path}")
        if opts.csv is not None:
            rows = export_csv(source.path, opts.csv / source.label_path)
            written.append(f"{rows:,} rows -> {opts.csv / source.label_path}.csv")
        print(f"{source.label}: {'; '.join(written)} ({time.perf_counter() - start:.1f} s)")


COMMANDS = {"export": options_command(export, ExportOptions, doc=export.__doc__, name="export")}
