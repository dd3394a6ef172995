"""The viewer's side of a run directory (layout and reasons in profiles/store.py).

`RunReader.poll()` returns only what is new since the previous poll: complete JSON records, new
points of each scalar series, and the manifest when it changed.

A resumed run (``spintui train --resume``) continues from a checkpoint at step S: its new trainer
appends a ``resume`` record, and what the previous trainer logged past S is superseded. The reader
drops those records (a step above S, before the resume record) and scalar points (a step above S,
written before the resume record's time); `Update.resumes` tells a viewer holding earlier polls'
data to drop its own points past S.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spintui.errors import RunError
from spintui.profiles.records import SCALAR_MAGIC, SCALAR_SIZE, iter_jsonl, scalar_dtype
from spintui.profiles.store import MANIFEST, RunPaths, read_manifest


@dataclass
class ScalarSeries:
    """One named series: parallel numpy arrays, appended to as a run grows."""

    name: str
    steps: Any = None
    times: Any = None
    values: Any = None

    def __len__(self) -> int:
        return 0 if self.steps is None else len(self.steps)


@dataclass
class Update:
    """What a poll found since the previous one."""

    records: list[dict] = field(default_factory=list)
    scalars: dict[str, ScalarSeries] = field(default_factory=dict)  # only the new points per name
    manifest: dict | None = None  # set when run.json changed
    resumes: list[dict] = field(default_factory=list)  # resume records: drop what was polled past their step

    def __bool__(self) -> bool:
        return bool(self.records or self.scalars or self.manifest is not None)


class RunReader:
    """Incremental reader of one run: each ``poll()`` returns only what is new since the last one.

    Works on live, finished, crashed and copied runs, on any filesystem; never writes. With
    `scalars=False` it never reads scalars.bin (a viewer that shows only returns and progress).
    """

    def __init__(self, run_dir: Path | str, scalars: bool = True):
        self.run_dir = Path(run_dir)
        self.read_scalars = scalars
        self.paths = RunPaths(self.run_dir)
        if not os.path.lexists(self.paths.manifest):  # a damaged one is read (and skipped) by poll
            raise RunError(f"{self.run_dir} is not a spintui run (no {MANIFEST})")
        self._metrics_offset = 0
        self._scalars_offset = 0
        self._manifest_stamp: tuple | None = None
        self.manifest: dict = {}
        self.key_names: dict[int, str] = {}
        self.resumes: list[tuple[int, float]] = []  # (step, time) of every resume record so far

    @property
    def metrics_offset(self) -> int:
        """How far into metrics.jsonl the records returned so far go (bytes)."""
        return self._metrics_offset

    def resume_metrics(self, offset: int, key_names: dict[int, str], resumes=()) -> None:
        """Go on reading metrics.jsonl from `offset`, as if its records up to there had been read
        (by a viewer that kept what it parsed), with the scalar key names and the resumes
        ((step, time) pairs) they hold: scalar points are read again, and sifted by those."""
        self._metrics_offset = offset
        self.key_names.update(key_names)
        self.resumes.extend((int(step), float(when)) for step, when in resumes)

    def _read_from(self, path: Path, offset: int) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except OSError:  # not there yet, or not a file: nothing to read
            return b""

    def poll(self) -> Update:
        import numpy as np

        update = Update()
        try:
            st = os.stat(self.paths.manifest)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._manifest_stamp:
                self.manifest = read_manifest(self.run_dir)
                self._manifest_stamp = stamp
                update.manifest = self.manifest
        except (OSError, RunError):
            pass  # damaged, or the directory went away: keep the last one

        # Binary scalars first, then the JSON log that names their keys (see module docstring).
        blob = self._read_from(self.paths.scalars, self._scalars_offset) if self.read_scalars else b""
        usable = len(blob) - len(blob) % SCALAR_SIZE
        blob = blob[:usable]
        self._scalars_offset += usable

        data = self._read_from(self.paths.metrics, self._metrics_offset)
        end = data.rfind(b"\n") + 1  # a record without its newline is still being written
        self._metrics_offset += end
        for rec in iter_jsonl(data[:end]):
            if rec.get("kind") == "key":
                try:
                    self.key_names[int(rec["id"])] = str(rec["name"])
                except (KeyError, ValueError, TypeError):
                    pass
            elif rec.get("kind") == "resume" and _is_step(rec.get("step")) and _is_step(rec.get("time")):
                step = rec["step"]
                self.resumes.append((step, float(rec["time"])))
                update.records = [r for r in update.records if not (_is_step(r.get("step")) and r["step"] > step)]
                update.records.append(rec)
                update.resumes.append(rec)
            else:
                update.records.append(rec)

        if blob:
            arr = np.frombuffer(blob, dtype=scalar_dtype())
            keys = arr["key"]
            valid = (keys ^ arr["check"]) == SCALAR_MAGIC
            for step, when in self.resumes:  # points the previous trainer wrote past the checkpoint
                valid &= (arr["step"] <= step) | (arr["time"] >= when)
            if not valid.all():  # zero-filled, damaged or superseded records
                arr = arr[valid]
                keys = arr["key"]
            if len(arr):
                counts = np.bincount(keys)
                present = np.flatnonzero(counts)
                columns = {f: arr[f] for f in ("step", "time", "value")}
                if len(present) == 1:
                    groups = [(int(present[0]), slice(None))]
                elif len(present) <= 16:  # a boolean pass per key beats sorting a million keys
                    groups = [(int(k), keys == k) for k in present]
                else:
                    order = np.argsort(keys, kind="stable")
                    bounds = np.concatenate(([0], np.cumsum(counts[present])))
                    groups = [(int(k), order[lo:hi]) for k, lo, hi in zip(present, bounds[:-1], bounds[1:])]
                for key, index in groups:
                    name = self.key_names.get(key, f"key{key}")
                    step, when, value = (np.array(columns[f][index]) for f in ("step", "time", "value"))
                    update.scalars[name] = ScalarSeries(name, step, when, value)
        return update


def _is_step(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
