"""What Spinning Up's tools read, written by every training run and read back from Spinning Up's runs.

* `progress.txt`: Spinning Up's epoch table (tab-separated, a header row, a row per epoch). Cells
  keep full precision: integers as integers (`TotalEnvInteracts` 1000000, never `1e+06`), floats as
  their `repr` (the shortest text that reads back to the same double), a missing value as an empty
  cell. A column that first appears after the first row is added to the header: the table is
  rewritten with the new header (earlier rows get an empty cell) and atomically replaces the old
  one, so a reader sees the old table or the new one, never a mix.
* `config.json`: `exp_name` (equal for the seeds of one configuration, see profiles/config_groups.py),
  the algorithm and the run's resolved config, as Spinning Up's `logx` writes it; its plot.py groups
  runs by `exp_name`.
* `read_progress` reads a progress.txt written by either (for `spintui plot` of Spinning Up output
  directories); `table_columns` its rows (profiles/foreign_logs.py reads a growing one).
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from spintui.profiles.config_groups import exp_name
from spintui.profiles.store import RunPaths, write_json_atomic


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value).replace("\t", " ").replace("\n", " ")


class ProgressTable:
    """Appends epoch rows to a progress.txt, widening its header when a new column appears.

    An existing file (a resumed run) keeps its header and rows. Not thread-safe: the caller locks.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.columns: list[str] | None = None

    def _read_header(self) -> list[str]:
        try:
            with open(self.path) as f:
                first = f.readline()
        except FileNotFoundError:
            return []
        return first.rstrip("\n").split("\t") if first.strip() else []

    def append(self, row: dict[str, Any]) -> None:
        if self.columns is None:
            self.columns = self._read_header()
        new = [c for c in row if c not in self.columns]
        line = ""
        if not self.columns:
            self.columns = list(row)
            line = "\t".join(self.columns) + "\n"
        elif new:
            self._rewrite_with(new)
        line += "\t".join(format_cell(row.get(c)) for c in self.columns) + "\n"
        with open(self.path, "a") as f:
            f.write(line)

    def _rewrite_with(self, new: list[str]) -> None:
        """The table with `new` columns appended to the header, replacing the file atomically."""
        assert self.columns is not None
        try:
            lines = self.path.read_text().splitlines()[1:]
        except FileNotFoundError:
            lines = []
        self.columns = self.columns + new
        pad = "\t" * len(new)
        self._replace("\t".join(self.columns) + "\n" + "".join(f"{ln}{pad}\n" for ln in lines if ln.strip()))

    def keep_epochs(self, last_epoch: int) -> None:
        """Keep the header and the whole rows of epochs up to `last_epoch` (a resumed run logs the later
        ones again); a torn last line or a row of another width is dropped. Replaces the file atomically."""
        try:
            lines = self.path.read_text().split("\n")[:-1]  # after the last newline: torn, or nothing
        except (FileNotFoundError, UnicodeDecodeError):
            return
        if not lines or not lines[0].strip():
            return
        self.columns = lines[0].split("\t")
        kept = [lines[0]]
        for line in lines[1:]:
            cells = line.split("\t")
            if len(cells) == len(self.columns) and cells[0].isdigit() and int(cells[0]) <= last_epoch:
                kept.append(line)
        self._replace("".join(f"{ln}\n" for ln in kept))

    def _replace(self, body: str) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(body)
        os.replace(tmp, self.path)


def write_config_json(run_dir: Path | str, manifest: dict) -> Path:
    """config.json with Spinning Up's exp_name, the algorithm and the run's config."""
    config = dict(manifest.get("config") or {})
    algo, env = manifest.get("algo"), manifest.get("env") or config.get("env")
    path = RunPaths(run_dir).config_json
    write_json_atomic(path, {"exp_name": exp_name(algo, env, config), "algo": algo, **config})
    return path


def read_progress(path: Path | str) -> dict[str, list[float]]:
    """A progress.txt as columns of floats (an empty or unreadable cell is NaN), in header order."""
    text = Path(path).read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return {}
    return table_columns(lines[0].split("\t"), lines[1:])


def table_columns(header: list[str], lines: list[str]) -> dict[str, list[float]]:
    """Tab-separated rows under `header` as columns of floats (an empty or unreadable cell is NaN)."""
    columns: dict[str, list[float]] = {name: [] for name in header}
    for ln in lines:
        cells = ln.split("\t")
        for i, name in enumerate(header):
            try:
                columns[name].append(float(cells[i]))
            except (IndexError, ValueError):
                columns[name].append(math.nan)
    return columns


def read_config_json(run_dir: Path | str) -> dict:
    """A Spinning Up config.json, or {} when there is none or it is not a JSON object."""
    try:
        data = json.loads(RunPaths(run_dir).config_json.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
