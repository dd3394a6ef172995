"""The run directory: the one contract between producers (trainers, kernel benchmarks) and viewers.

A run is a directory (every path in it comes from `RunPaths`)::

    2026-11-26_140311_sac_Pendulum-v1_s0/
        run.json        manifest: kind, algo, env, resolved config, seed, argv, host, pid, versions,
                        status and heartbeat; always replaced atomically (temp file + rename)
        metrics.jsonl   append-only JSON Lines: episodes, epoch summaries, events, GPU samples,
                        kernel timings, and the names of scalar series
        scalars.bin     append-only fixed-size binary records (key, check, time, step, value)
        progress.txt    Spinning Up compatible tab-separated epoch table (for existing plot tools)
        config.json     Spinning Up's exp_name and the config (profiles/spinningup.py)
        output.log      stdout and stderr of a producer the CLI started
        checkpoints/    written by trainers (latest.pt)
        control/        requests from viewers to the producer (a `stop` file asks for a clean stop)

Modules: this one holds the layout, the manifest (create, read, status); profiles/run_writer.py the
producer's side, profiles/run_reader.py the viewer's side, profiles/records.py the log formats,
profiles/runs.py finding and listing runs.

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
* Tolerant reading. `read_manifest` returns every documented field with its documented type (a
  field that is missing or of another type gets its default), so no viewer trips over an odd value;
  a run.json that cannot be read as a JSON object raises `DamagedRunError`, which listings show as
  status "damaged" beside the other runs.
* Dead writers show at once. The process that writes a run claims it (RunWriter), recording its pid
  and the process's start time. A viewer on the same host shows a running run whose writer process
  is gone (or whose pid now belongs to another process) as crashed at once; elsewhere, a heartbeat
  older than 30 s means crashed. `create_run` records no start time: the CLI that creates a run
  exits while its trainer starts, so an unclaimed run only goes by its heartbeat.

This module imports neither torch nor Textual: producers and viewers both use it.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spintui.errors import RunError
from spintui.profiles.provenance import host_name, versions
from spintui.profiles.records import json_default

MANIFEST = "run.json"
METRICS = "metrics.jsonl"
SCALARS = "scalars.bin"
PROGRESS = "progress.txt"
SPINUP_CONFIG = "config.json"
OUTPUT_LOG = "output.log"
CONTROL = "control"
STOP_REQUEST = "stop"
CHECKPOINTS = "checkpoints"
LATEST_CHECKPOINT = "latest.pt"

STALE_AFTER_S = 30.0
START_TIME_SLACK_S = 2.0  # /proc/stat's boot time (psutil's base for start times) may move by 1 s

STATUSES = ("running", "finished", "failed", "stopped")
DAMAGED = "damaged"  # shown for a run whose run.json cannot be read; never written


@dataclass(frozen=True)
class RunPaths:
    """Every path inside one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    manifest = property(lambda self: self.root / MANIFEST)
    metrics = property(lambda self: self.root / METRICS)
    scalars = property(lambda self: self.root / SCALARS)
    progress = property(lambda self: self.root / PROGRESS)
    config_json = property(lambda self: self.root / SPINUP_CONFIG)
    output_log = property(lambda self: self.root / OUTPUT_LOG)
    checkpoints = property(lambda self: self.root / CHECKPOINTS)
    latest_checkpoint = property(lambda self: self.root / CHECKPOINTS / LATEST_CHECKPOINT)
    control = property(lambda self: self.root / CONTROL)
    stop_request = property(lambda self: self.root / CONTROL / STOP_REQUEST)


class DamagedRunError(RunError):
    """run.json exists but is not a readable JSON object; `reason` says how, in a few words."""

    def __init__(self, run_dir: Path | str, reason: str):
        super().__init__(f"run {run_dir} is damaged: {reason}")
        self.run_dir = Path(run_dir)
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# The manifest

_NUMBER = "number"
# field: (type, default); `read_manifest` gives every one of them, of this type or the default.
MANIFEST_FIELDS: dict[str, tuple[Any, Any]] = {
    "format": (int, 1),
    "name": (str, None),
    "kind": (str, None),
    "algo": (str, None),
    "benchmark": (str, None),
    "env": (str, None),
    "seed": (int, None),
    "config": (dict, {}),
    "argv": (list, []),
    "host": (str, None),
    "pid": (int, None),
    "pid_start_time": (_NUMBER, None),  # set when a writer claims the run (see effective_status)
    "start_time": (_NUMBER, None),
    "heartbeat": (_NUMBER, None),
    "end_time": (_NUMBER, None),
    "status": (str, "unknown"),
    "versions": (dict, {}),
    "progress": (dict, {}),
}
OPTIONAL_FIELDS = {"environment": dict, "compare": dict}  # checked only where present (profiles)
PROGRESS_NUMBERS = ("step", "total_steps", "epoch", "last_return", "test_return", "steps_per_sec", "eta_s",
                    "wrong", "errors")


def _has_type(value: Any, kind: Any) -> bool:
    if kind is _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def normalize_manifest(raw: dict) -> dict:
    """A copy of `raw` with every documented field present and of its documented type."""
    manifest = dict(raw)
    for key, (kind, default) in MANIFEST_FIELDS.items():
        if not _has_type(manifest.get(key), kind):
            manifest[key] = type(default)() if isinstance(default, (dict, list)) else default
    for key, kind in OPTIONAL_FIELDS.items():
        if key in manifest and manifest[key] is not None and not isinstance(manifest[key], kind):
            manifest[key] = None
    manifest["progress"] = {k: v for k, v in manifest["progress"].items()
                            if k not in PROGRESS_NUMBERS or v is None or _has_type(v, _NUMBER)}
    return manifest


def write_json_atomic(path: Path, data: dict) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    payload = json.dumps(data, indent=2, default=json_default).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_manifest(run_dir: Path | str) -> dict:
    """The run's manifest, normalized; RunError if there is none, DamagedRunError if it is unusable."""
    path = RunPaths(run_dir).manifest
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DamagedRunError(run_dir, f"{MANIFEST} is a broken link") from None
        raise RunError(f"{run_dir} is not a spintui run (no {MANIFEST})") from None
    except OSError as exc:
        raise DamagedRunError(run_dir, f"cannot read {MANIFEST}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):  # never open a directory or a FIFO (a read could block)
        raise DamagedRunError(run_dir, f"{MANIFEST} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DamagedRunError(run_dir, f"cannot read {MANIFEST}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DamagedRunError(run_dir, f"{MANIFEST} is not valid JSON ({exc.msg}: line {exc.lineno} "
                                       f"column {exc.colno})") from None
    except ValueError:  # not UTF-8
        raise DamagedRunError(run_dir, f"{MANIFEST} is not JSON text") from None
    if not isinstance(raw, dict):
        raise DamagedRunError(run_dir, f"{MANIFEST} holds a JSON {type(raw).__name__}, not an object")
    return normalize_manifest(raw)


# --------------------------------------------------------------------------------------------------
# Status


def process_start_time(pid: int | None = None) -> float | None:
    """When process `pid` (default: this one) started, in epoch seconds; None if unknown."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def process_alive(pid: int, start_time: float | None = None) -> bool:
    """False only when this host can tell that process `pid` is gone, is a zombie, or is another
    process than the one that started at `start_time` (a reused pid)."""
    if pid <= 0:
        return True
    if os.name == "posix":  # signal 0 sees processes that a hidepid /proc hides
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, OverflowError):  # gone, or no pid at all
            return False
        except OSError:
            pass  # EPERM: it exists, owned by another user
    try:
        import psutil
    except ImportError:
        return True
    try:
        proc = psutil.Process(pid)  # sees what signal 0 cannot: zombies and reused pids
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if start_time is not None and abs(proc.create_time() - start_time) > START_TIME_SLACK_S:
            return False
    except psutil.ZombieProcess:
        return False
    except psutil.NoSuchProcess:
        return os.name == "posix"  # signal 0 found it: /proc is hidden from us, so we cannot tell
    except (psutil.Error, ValueError, OverflowError):
        pass
    return True


def writer_gone(manifest: dict) -> bool:
    """True when the process that claimed the run ran on this host and is no longer running."""
    pid, started = manifest.get("pid"), manifest.get("pid_start_time")
    if not _has_type(started, _NUMBER) or not _has_type(pid, int):
        return False  # not claimed yet: the CLI that created the run may have exited on purpose
    if manifest.get("host") != host_name():
        return False  # another host: only the heartbeat tells
    return not process_alive(pid, started)


def effective_status(manifest: dict, now: float | None = None) -> str:
    """The status to show: a run marked running whose writer is gone, or whose heartbeat is stale,
    has crashed."""
    status = manifest.get("status")
    if not isinstance(status, str):
        return "unknown"
    if status == "running":
        now = time.time() if now is None else now
        beat = manifest.get("heartbeat")
        if not _has_type(beat, _NUMBER) or now - beat > STALE_AFTER_S or writer_gone(manifest):
            return "crashed"
    return status


# --------------------------------------------------------------------------------------------------
# Creating runs and asking them to stop


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
        "pid": os.getpid(),  # the creator's, until the writer claims the run
        "pid_start_time": None,
        "start_time": now,
        "heartbeat": now,
        "end_time": None,
        "status": "running",
        "versions": versions(),
        "progress": {},
    }
    if extra:
        manifest.update(extra)
    write_json_atomic(RunPaths(candidate).manifest, manifest)
    return candidate


def reopen_run(run_dir: Path | str, status: str = "running") -> None:
    """Hand a stopped, crashed or failed run to a new trainer (`spintui train --resume`): `running`
    for one about to start (unclaimed, as create_run leaves a run), `queued` for a scheduler's."""
    manifest = read_manifest(run_dir)
    manifest.update(status=status, heartbeat=time.time(), end_time=None, pid_start_time=None,
                    pid=os.getpid() if status == "running" else None, host=host_name())
    write_json_atomic(RunPaths(run_dir).manifest, manifest)
    clear_stop_request(run_dir)


def clear_stop_request(run_dir: Path | str) -> None:
    """Forget a stop request that the run's previous producer has answered."""
    RunPaths(run_dir).stop_request.unlink(missing_ok=True)


def request_stop(run_dir: Path | str) -> None:
    """Ask a run's producer for a clean stop; works from any host that sees the directory."""
    paths = RunPaths(run_dir)
    paths.control.mkdir(exist_ok=True)
    paths.stop_request.write_text(f"{host_name()} {os.getpid()} {time.time()}\n")
