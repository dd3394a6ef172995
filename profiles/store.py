"""The run directory: the one contract between producers (trainers, kernel benchmarks) and viewers.

A run is a directory::

    2026-11-26_140311_sac_Pendulum-v1_s0/
        run.json        manifest: kind, algo, env, resolved config, seed, argv, host, pid, versions,
                        status and heartbeat; always replaced atomically (temp file + rename)
        metrics.jsonl   append-only JSON Lines: episodes, epoch summaries, events, GPU samples,
                        kernel timings, and the names of scalar series
        scalars.bin     append-only fixed-size binary records (key, check, time, step, value)
        progress.txt    Spinning Up compatible tab-separated epoch table (for existing plot tools)
        checkpoints/    written by trainers
        control/        requests from viewers to the producer (a `stop` file asks for a clean stop)

Why this design:

* Crash safety without fsync on every record. Both logs are append-only and every flush is one
  ``os.write`` of whole records to an ``O_APPEND`` descriptor. A writer killed with SIGKILL can only
  leave a torn *tail*: a JSON line without its newline, or a trailing partial binary record. Readers
  consume complete records only (up to the last newline, or a whole multiple of the record size) and
  skip any line that does not parse, so a torn record is never fatal and never corrupts what follows.
  A writer that reopens a log (resume) first terminates a torn JSON line and pads a torn binary
  record, so later records stay aligned.
* Readable from another host. Nothing depends on locks, mmap coherence or shared memory, so a
  viewer can tail a run over NFS/Lustre/sshfs or read a directory copied with rsync. SQLite's WAL mode
  needs every reader on the writer's host and is therefore not used for the run directory.
* Fast late attach. Scalars are the high-volume data (a loss per update). Parsing JSON costs about
  1.6 s per million small records on a 2-core machine; the binary log is read with one
  ``numpy.frombuffer`` call (milliseconds per million records). Scalar names live in metrics.jsonl as
  ``{"kind": "key"}`` records written before the first binary record that uses them; readers read
  scalars.bin *before* metrics.jsonl so every key they see is already named.
* Cheap for producers. Records are buffered in memory and flushed by a background thread at least
  every second (and at exit), the same thread that refreshes the heartbeat every 2 s, so a training
  loop pays only for formatting.

This module imports neither torch nor Textual: producers and viewers both use it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from spintui.errors import RunError
from spintui.profiles.provenance import host_name, versions

MANIFEST = "run.json"
METRICS = "metrics.jsonl"
SCALARS = "scalars.bin"
PROGRESS = "progress.txt"
CONTROL = "control"
STOP_REQUEST = "stop"
CHECKPOINTS = "checkpoints"

HEARTBEAT_INTERVAL_S = 2.0
FLUSH_INTERVAL_S = 1.0
STALE_AFTER_S = 30.0

STATUSES = ("running", "finished", "failed", "stopped")

# key (uint32), check (uint32 = key ^ MAGIC), wall time (float64), step (int64), value (float64)
SCALAR_FORMAT = "<IIdqd"
SCALAR_SIZE = struct.calcsize(SCALAR_FORMAT)
SCALAR_MAGIC = 0x5350494E  # "SPIN": a zero-filled or misaligned record fails the check
_pack_scalar = struct.Struct(SCALAR_FORMAT).pack


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf; keep them readable as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"), default=_json_default, allow_nan=False)


def write_json_atomic(path: Path, data: dict) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    payload = json.dumps(data, indent=2, default=_json_default).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_manifest(run_dir: Path | str) -> dict:
    path = Path(run_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a spintui run (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None


def effective_status(manifest: dict, now: float | None = None) -> str:
    """The status to show: a run marked running whose heartbeat is stale has crashed."""
    status = manifest.get("status", "unknown")
    if status == "running":
        now = time.time() if now is None else now
        if now - float(manifest.get("heartbeat", 0.0)) > STALE_AFTER_S:
            return "crashed"
    return status


def _safe_name_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in text)


def new_run_name(kind_label: str, env: str | None, seed: int | None, when: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(when or time.time()))
    parts = [stamp, _safe_name_part(kind_label)]
    if env:
        parts.append(_safe_name_part(env))
    if seed is not None:
        parts.append(f"s{seed}")
    return "_".join(parts)


def create_run(
    runs_dir: Path | str,
    *,
    kind: str,
    name: str | None = None,
    algo: str | None = None,
    benchmark: str | None = None,
    env: str | None = None,
    seed: int | None = None,
    config: dict | None = None,
    argv: list[str] | None = None,
    extra: dict | None = None,
) -> Path:
    """Make a new run directory with its manifest (status running). Never reuses an existing one."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = name or new_run_name(algo or benchmark or kind, env, seed)
    if os.sep in base or base in ("", ".", "..", "latest"):
        raise RunError(f"invalid run name {base!r}: use letters, digits, '-', '_' or '.'")
    for i in range(1000):
        candidate = runs_dir / (base if i == 0 else f"{base}-{i + 1}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - a thousand runs with the same name in one second
        raise RunError(f"cannot find a free run name under {runs_dir} for {base}")
    now = time.time()
    manifest = {
        "format": 1,
        "name": candidate.name,
        "kind": kind,
        "algo": algo,
        "benchmark": benchmark,
        "env": env,
        "seed": seed,
        "config": config or {},
        "argv": list(sys.argv if argv is None else argv),
        "host": host_name(),
        "pid": os.getpid(),
        "start_time": now,
        "heartbeat": now,
        "end_time": None,
        "status": "running",
        "versions": versions(),
        "progress": {},
    }
    if extra:
        manifest.update(extra)
    write_json_atomic(candidate / MANIFEST, manifest)
    return candidate


class RunWriter:
    """The producer's side of a run: buffered, crash-safe appends plus the heartbeat.

    Use as a context manager, or call ``close(status)``. All methods are thread-safe.
    """

    def __init__(self, run_dir: Path | str, *, heartbeat: bool = True, claim: bool = True):
        self.run_dir = Path(run_dir)
        self.manifest = read_manifest(self.run_dir)
        if claim:
            # The process that writes the run owns it: viewers match GPU processes by this pid.
            self.manifest["pid"] = os.getpid()
            self.manifest["host"] = host_name()
            self.manifest["status"] = "running"
            self.manifest["end_time"] = None
            self.manifest["versions"] = {**self.manifest.get("versions", {}), **versions()}
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._scalars = bytearray()
        self._keys: dict[str, int] = {}
        self._progress_columns: list[str] | None = None
        self._metrics_fd = self._open_append(self.run_dir / METRICS, None)
        self._scalars_fd = self._open_append(self.run_dir / SCALARS, SCALAR_SIZE)
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
        path = self.run_dir / METRICS
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
        record.update({k: _clean(v) for k, v in fields.items()})
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
                self._scalars += _pack_scalar(key, key ^ SCALAR_MAGIC, now, int(step), float(value))

    def episode(self, step: int, ret: float, length: int, *, test: bool = False, **extra: Any) -> None:
        self.log("episode", step=int(step), ret=float(ret), length=int(length), test=test, **extra)

    def epoch(self, epoch: int, step: int, stats: dict[str, float]) -> None:
        """An epoch summary with Spinning Up's column names; also appended to progress.txt."""
        stats = {k: _clean(float(v)) if isinstance(v, (int, float)) or hasattr(v, "item") else v
                 for k, v in stats.items()}
        self.log("epoch", epoch=int(epoch), step=int(step), stats=stats)
        row = {"Epoch": epoch, **stats}
        with self._lock:
            path = self.run_dir / PROGRESS
            if self._progress_columns is None:
                self._progress_columns = list(row)
                if not path.exists() or path.stat().st_size == 0:
                    with open(path, "a") as f:
                        f.write("\t".join(self._progress_columns) + "\n")
            cells = ["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]))
                     for c in self._progress_columns]
            with open(path, "a") as f:
                f.write("\t".join(cells) + "\n")

    def event(self, message: str, **extra: Any) -> None:
        self.log("event", message=message, **extra)

    def set_progress(self, **progress: Any) -> None:
        """Small summary kept in the manifest for listings: step, total_steps, last_return, ..."""
        with self._lock:
            self.manifest.setdefault("progress", {}).update({k: _clean(v) for k, v in progress.items()})
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
            snapshot = json.loads(json.dumps(self.manifest, default=_json_default))
            self._manifest_dirty = False
        write_json_atomic(self.run_dir / MANIFEST, snapshot)

    def _background(self) -> None:
        last_beat = time.monotonic()
        stop_file = self.run_dir / CONTROL / STOP_REQUEST
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


def request_stop(run_dir: Path | str) -> None:
    """Ask a run's producer for a clean stop; works from any host that sees the directory."""
    control = Path(run_dir) / CONTROL
    control.mkdir(exist_ok=True)
    (control / STOP_REQUEST).write_text(f"{host_name()} {os.getpid()} {time.time()}\n")


# ------------------------------------------------------------------------------------------------
# Reading


def iter_jsonl(data: bytes) -> Iterable[dict]:
    """Parse complete JSON lines, skipping any that do not parse (a torn or damaged record)."""
    body = data.strip()
    if body:
        # Fast path: one json.loads over all lines (about twice as fast as one call per line).
        # Raw newlines cannot occur inside JSON strings, so they only separate records; any
        # damaged or blank line makes this fail and the careful per-line path below runs instead.
        try:
            records = json.loads(b"[" + body.replace(b"\n", b",") + b"]")
        except ValueError:
            pass
        else:
            yield from (rec for rec in records if isinstance(rec, dict))
            return
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


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

    def __bool__(self) -> bool:
        return bool(self.records or self.scalars or self.manifest is not None)


class RunReader:
    """Incremental reader of one run: each ``poll()`` returns only what is new since the last one.

    Works on live, finished, crashed and copied runs, on any filesystem; never writes.
    """

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / MANIFEST).exists():
            raise RunError(f"{self.run_dir} is not a spintui run (no {MANIFEST})")
        self._metrics_offset = 0
        self._scalars_offset = 0
        self._manifest_stamp: tuple | None = None
        self.manifest: dict = {}
        self.key_names: dict[int, str] = {}

    def _read_from(self, path: Path, offset: int) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def poll(self) -> Update:
        import numpy as np

        update = Update()
        try:
            st = os.stat(self.run_dir / MANIFEST)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._manifest_stamp:
                self.manifest = read_manifest(self.run_dir)
                self._manifest_stamp = stamp
                update.manifest = self.manifest
        except (OSError, RunError):
            pass  # being replaced right now, or the directory went away: keep the last one

        # Binary scalars first, then the JSON log that names their keys (see module docstring).
        blob = self._read_from(self.run_dir / SCALARS, self._scalars_offset)
        usable = len(blob) - len(blob) % SCALAR_SIZE
        blob = blob[:usable]
        self._scalars_offset += usable

        data = self._read_from(self.run_dir / METRICS, self._metrics_offset)
        end = data.rfind(b"\n") + 1  # a record without its newline is still being written
        self._metrics_offset += end
        for rec in iter_jsonl(data[:end]):
            if rec.get("kind") == "key":
                try:
                    self.key_names[int(rec["id"])] = str(rec["name"])
                except (KeyError, ValueError, TypeError):
                    pass
            else:
                update.records.append(rec)

        if blob:
            arr = np.frombuffer(blob, dtype=scalar_dtype())
            keys = arr["key"]
            valid = (keys ^ arr["check"]) == SCALAR_MAGIC
            if not valid.all():  # zero-filled or damaged records
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


@functools.lru_cache(maxsize=1)
def scalar_dtype():
    """numpy dtype of one scalars.bin record (numpy is imported only by readers)."""
    import numpy as np

    return np.dtype([("key", "<u4"), ("check", "<u4"), ("time", "<f8"), ("step", "<i8"), ("value", "<f8")])
