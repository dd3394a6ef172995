"""The producer's side of a run directory (layout and reasons in profiles/store.py).

Trainers and kernel sweeps append records through a `RunWriter`; a background thread flushes them
at least every second and refreshes the manifest's heartbeat every 2 s.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from spintui.profiles.provenance import host_name, versions
from spintui.profiles.records import (SCALAR_MAGIC, SCALAR_SIZE, clean, clean_number, dumps, iter_jsonl, json_default,
                                      pack_scalar)
from spintui.profiles.spinningup import ProgressTable
from spintui.profiles.store import STATUSES, RunPaths, process_start_time, read_manifest, write_json_atomic

HEARTBEAT_INTERVAL_S = 2.0
FLUSH_INTERVAL_S = 1.0


class RunWriter:
    """The producer's side of a run: buffered, crash-safe appends plus the heartbeat.

    Use as a context manager, or call ``close(status)``. All methods are thread-safe.
    """

    def __init__(self, run_dir: Path | str, *, heartbeat: bool = True, claim: bool = True):
        self.run_dir = Path(run_dir)
        self.paths = RunPaths(self.run_dir)
        self.manifest = read_manifest(self.run_dir)
        if claim:
            # The process that writes the run owns it: viewers match GPU processes by this pid, and
            # on this host a running run whose process is gone shows as crashed at once.
            self.manifest["pid"] = os.getpid()
            self.manifest["pid_start_time"] = process_start_time()
            self.manifest["host"] = host_name()
            self.manifest["status"] = "running"
            self.manifest["end_time"] = None
            self.manifest["versions"] = {**self.manifest.get("versions", {}), **versions()}
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._scalars = bytearray()
        self._keys: dict[str, int] = {}
        self._progress = ProgressTable(self.paths.progress)
        self._metrics_fd = self._open_append(self.paths.metrics, None)
        self._scalars_fd = self._open_append(self.paths.scalars, SCALAR_SIZE)
        self._load_existing_keys()
        self._closed = False
        self._stop_requested = threading.Event()
        self._manifest_dirty = True
        self._write_manifest()
        self._thread: threading.Thread | None = None
        if heartbeat:
            self._thread = threading.Thread(target=self._background, name="spintui-run-writer", daemon=True)
            self._thread.start()

    # -- opening -----------------------------------------------------------------------------
    @staticmethod
    def _open_append(path: Path, record_size: int | None) -> int:
        """Open a log for appending; first repair a torn tail left by a killed writer."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(fd).st_size
        if size and record_size is None:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(fd, b"\n")  # the torn JSON record becomes a lone bad line
        elif size and size % record_size:
            os.write(fd, b"\0" * (record_size - size % record_size))  # zeros fail the check
        return fd

    def _load_existing_keys(self) -> None:
        path = self.paths.metrics
        if path.stat().st_size == 0:
            return
        for rec in iter_jsonl(path.read_bytes()):
            if rec.get("kind") == "key":
                self._keys[rec["name"]] = int(rec["id"])

    # -- producer API ------------------------------------------------------------------------
    def log(self, kind: str, **fields: Any) -> None:
        """Append one JSON record, e.g. ``log("event", message="checkpoint saved")``."""
        fields.setdefault("time", time.time())
        record = {"kind": kind}
        record.update({k: clean(v) for k, v in fields.items()})
        line = dumps(record) + "\n"
        with self._lock:
            self._lines.append(line)

    def scalar(self, name: str, value: float, step: int) -> None:
        self.scalars({name: value}, step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Append a value per name at `step` (high-volume path: losses, Q values, timings)."""
        now = time.time()
        with self._lock:
            for name, value in values.items():
                key = self._keys.get(name)
                if key is None:
                    key = self._keys[name] = len(self._keys)
                    self._lines.append(dumps({"kind": "key", "id": key, "name": name, "time": now}) + "\n")
                self._scalars += pack_scalar(key, key ^ SCALAR_MAGIC, now, int(step), float(value))

    def episode(self, step: int, ret: float, length: int, *, test: bool = False, **extra: Any) -> None:
        self.log("episode", step=int(step), ret=float(ret), length=int(length), test=test, **extra)

    def epoch(self, epoch: int, step: int, stats: dict[str, float]) -> None:
        """An epoch summary with Spinning Up's column names; also appended to progress.txt."""
        stats = {k: clean_number(v) for k, v in stats.items()}
        self.log("epoch", epoch=int(epoch), step=int(step), stats=stats)
        with self._lock:
            self._progress.append({"Epoch": int(epoch), **stats})

    def event(self, message: str, **extra: Any) -> None:
        self.log("event", message=message, **extra)

    def resume(self, step: int, epoch: int) -> None:
        """Continue the run from a checkpoint at `step` (after `epoch` whole epochs).

        Appends a ``resume`` record: readers drop what the previous trainer logged past `step`
        (records before this one with a larger step, scalar points with a larger step written
        before its time). progress.txt is replaced, atomically, by its rows up to `epoch`, so each
        epoch appears once after the resumed trainer logs it again.
        """
        self.log("resume", step=int(step), epoch=int(epoch))
        self.flush()
        with self._lock:
            self._progress.keep_epochs(int(epoch))
            self.manifest["error"] = None  # a failure of the previous trainer is no longer the outcome
            self.manifest.setdefault("progress", {}).update(step=int(step), epoch=int(epoch))
            self._manifest_dirty = True

    def set_progress(self, **progress: Any) -> None:
        """Small summary kept in the manifest for listings: step, total_steps, last_return, ..."""
        with self._lock:
            self.manifest.setdefault("progress", {}).update({k: clean(v) for k, v in progress.items()})
            self._manifest_dirty = True

    def update_manifest(self, **fields: Any) -> None:
        with self._lock:
            self.manifest.update(fields)
            self._manifest_dirty = True
        self._write_manifest()

    @property
    def stop_requested(self) -> bool:
        """True once a viewer asked for a clean stop (control/stop) or ``request_stop`` was called."""
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        self._stop_requested.set()

    # -- flushing ----------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            blob, self._scalars = bytes(self._scalars), bytearray()
            # Key records go out before the binary records that use them (readers read scalars.bin
            # first, then metrics.jsonl), so the order of these two writes matters.
            if lines:
                os.write(self._metrics_fd, "".join(lines).encode())
            if blob:
                os.write(self._scalars_fd, blob)

    def _write_manifest(self) -> None:
        with self._lock:
            self.manifest["heartbeat"] = time.time()
            snapshot = json.loads(json.dumps(self.manifest, default=json_default))
            self._manifest_dirty = False
        write_json_atomic(self.paths.manifest, snapshot)

    def _background(self) -> None:
        last_beat = time.monotonic()
        stop_file = self.paths.stop_request
        while not self._closed:
            time.sleep(FLUSH_INTERVAL_S / 4)
            if self._closed:
                break
            try:
                self.flush()
                if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL_S:
                    last_beat = time.monotonic()
                    self._write_manifest()
                    if stop_file.exists():
                        self._stop_requested.set()
            except OSError:  # a full disk must not kill training; the next beat retries
                pass

    def close(self, status: str = "finished", **fields: Any) -> None:
        if self._closed:
            return
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        self._closed = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            self.manifest.update(fields)
            self.manifest["status"] = status
            self.manifest["end_time"] = time.time()
        self._write_manifest()
        os.close(self._metrics_fd)
        os.close(self._scalars_fd)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("stopped" if self.stop_requested else "finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("stopped")
        else:
            self.close("failed", error=f"{exc_type.__name__}: {exc}")

