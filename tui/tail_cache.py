"""A viewer's private cache of what it parsed from a run's metrics.jsonl, so attaching again is fast.

Parsing JSON is what attaching to big runs costs: about 6 us a record here, so an experiment of
32 runs with 100,000 episodes each takes half a minute to read, and the binary scalars are not the
problem. After a `RunTail` has parsed a large log (CACHE_MIN_BYTES or more since what is cached)
it stores its episodes as arrays and the few other records (epochs, events, kernels, key names,
resumes) as JSON, with the byte offset it had read to; the next viewer of that run loads them in
milliseconds and parses only what was appended since.

metrics.jsonl is append-only, so the bytes before the offset never change. An entry is used only
if the file is at least that long and hashes of its first 4 KiB and of the 4 KiB before the
offset match the ones stored; anything else (another run copied to the same path, a damaged entry,
a file that cannot be read or written) is a miss, and the run is read from its log as before.

Entries live in $SPINTUI_VIEWER_CACHE (`off` disables the cache), else $XDG_CACHE_HOME/spintui/tails
or ~/.cache/spintui/tails, one file per run path; entries unused for 30 days are removed. The run
directory itself is never written (it may be read-only, or shared over NFS).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from pathlib import Path

import numpy as np

from spintui.profiles.gpu_history import GpuHistory

from spintui.tui.series import EmaState

CACHE_ENV = "SPINTUI_VIEWER_CACHE"
CACHE_MIN_BYTES = 1 << 20
FORMAT = 3  # 2: also the run's resumes (a viewer sifts the scalars it reads again by them); 3: GPU history, traces
MAGIC = b"spintui-tail-cache\n"  # then the JSON header's length (8 bytes), the header, the arrays
PROBE = 4096
KEEP_S = 30 * 86400
_pruned = False


def cache_dir() -> Path | None:
    setting = os.environ.get(CACHE_ENV)
    if setting:
        return None if setting.lower() in ("off", "0", "none", "no") else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spintui" / "tails"


def entry_path(metrics: Path) -> Path | None:
    directory = cache_dir()
    if directory is None:
        return None
    key = hashlib.sha1(str(Path(metrics).resolve()).encode()).hexdigest()
    return directory / f"{key}.bin"


def fingerprint(metrics: Path, offset: int) -> dict | None:
    """Hashes of the log's first PROBE bytes and of the PROBE bytes before `offset`; None if the log
    is shorter than `offset` or cannot be read."""
    try:
        with open(metrics, "rb") as f:
            if os.fstat(f.fileno()).st_size < offset:
                return None
            head = f.read(min(PROBE, offset))
            f.seek(max(0, offset - PROBE))
            tail = f.read(min(PROBE, offset))
    except OSError:
        return None
    return {"offset": offset, "head": hashlib.sha1(head).hexdigest(), "tail": hashlib.sha1(tail).hexdigest()}


def save(tail) -> bool:
    """Store what `tail` (a RunTail) has parsed from its log, and its training returns' smoothed
    values when it has them for every episode; False where it cannot."""
    path = entry_path(tail.reader.paths.metrics)
    offset = tail.reader.metrics_offset
    stamp = fingerprint(tail.reader.paths.metrics, offset) if path is not None else None
    if stamp is None:
        return False
    json_records = tail.records - sum(len(s) for s in tail.scalars.values())  # scalars are read again
    meta = {**stamp, "format": FORMAT, "records": json_records,
            "key_names": {str(k): v for k, v in tail.reader.key_names.items()},
            "kernels": tail.kernels, "events": tail.events, "last_gpu": tail.last_gpu, "traces": tail.traces,
            "gpu_history": tail.gpu_history.state(),
            "resumes": tail.resumes, "reader_resumes": tail.reader.resumes,
            "epoch_stats": {name: [s.steps.tolist(), s.times.tolist(), s.values.tolist()]
                            for name, s in tail.epoch_stats.items()}}
    arrays = [np.ascontiguousarray(getattr(getattr(tail, which), column), dtype="<f8")
              for which in ("episodes", "test_episodes") for column in ("steps", "times", "values")]
    kept = tail.episodes.smoothing_kept()
    if kept is not None:  # the training returns' smoothed values (what a grouped view draws)
        meta["smoothing"] = {"weight": kept[0], "last": kept[1].last, "count": kept[1].count}
        arrays.append(np.ascontiguousarray(kept[2], dtype="<f8"))
    meta["lengths"] = [len(a) for a in arrays]
    try:
        head = json.dumps(meta, default=str).encode()
        head += b" " * (-len(head) % 8)  # the arrays start 8-byte aligned
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(head)) + head)
            for a in arrays:
                f.write(a.tobytes())
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        return False
    _prune(path.parent)
    return True


def load(tail) -> bool:
    """Give a fresh `tail` what its cache entry holds and move its reader past it; False on a miss."""
    path = entry_path(tail.reader.paths.metrics)
    if path is None:
        return False
    try:
        # Mapped, not read: a view pages in only the arrays it touches (the first frame of a
        # grouped view, steps and smoothed returns). Entries are replaced, never rewritten in place.
        data = np.memmap(path, dtype=np.uint8, mode="r")
        start = len(MAGIC) + 8
        if len(data) < start or bytes(data[:len(MAGIC)]) != MAGIC:
            return False
        (size,) = struct.unpack("<Q", bytes(data[len(MAGIC):start]))
        meta = json.loads(bytes(data[start:start + size]))
        if meta.get("format") != FORMAT:
            return False
        arrays, at = [], start + size
        for length in meta["lengths"]:
            arrays.append(data[at:at + 8 * int(length)].view("<f8"))
            at += 8 * int(length)
        if at > len(data):
            return False
        offset = int(meta["offset"])
        stamp = fingerprint(tail.reader.paths.metrics, offset)
        if stamp is None or any(stamp[k] != meta[k] for k in ("head", "tail")):
            return False
        smoothing = meta.get("smoothing")
        if len(arrays) != (7 if smoothing else 6) or len({len(a) for a in [*arrays[:3], *arrays[6:]]}) != 1 \
                or len({len(a) for a in arrays[3:6]}) != 1:
            return False
        columns = {"episodes": arrays[:3], "test_episodes": arrays[3:6]}
        if smoothing:
            smoothing = (float(smoothing["weight"]), EmaState(float(smoothing["last"]), int(smoothing["count"])),
                         arrays[6])
        epochs = {str(name): [np.asarray(v, dtype=np.float64) for v in series]
                  for name, series in meta["epoch_stats"].items()}
        kernels, events, records = list(meta["kernels"]), list(meta["events"]), int(meta["records"])
        traces, gpu_history = list(meta["traces"]), GpuHistory.from_state(meta["gpu_history"])
        resumes = [dict(r) for r in meta["resumes"]]
        reader_resumes = [(int(step), float(when)) for step, when in meta["reader_resumes"]]
        key_names = {int(k): str(v) for k, v in meta["key_names"].items()}
    except (OSError, KeyError, TypeError, ValueError, AttributeError, struct.error):
        return False
    for which, (steps, times, values) in columns.items():  # all checked: now fill the tail
        getattr(tail, which).adopt(steps, times, values)
    if smoothing:
        tail.episodes.keep_smoothing(*smoothing)
    for name, (steps, times, values) in epochs.items():
        tail.epoch_series(name).append(steps, times, values)
    tail.kernels.extend(kernels)
    tail.events.extend(events)
    tail.resumes.extend(resumes)
    tail.last_gpu = meta.get("last_gpu")
    tail.traces.extend(traces)
    tail.gpu_history = gpu_history
    tail.records += records
    tail.reader.resume_metrics(offset, key_names, reader_resumes)
    try:
        os.utime(path)  # used: keep it from being pruned
    except OSError:
        pass
    return True


def _prune(directory: Path) -> None:
    global _pruned
    if _pruned:
        return
    _pruned = True
    cutoff = time.time() - KEEP_S
    try:
        for entry in directory.iterdir():
            if entry.suffix == ".bin" and entry.stat().st_mtime < cutoff:
                entry.unlink()
    except OSError:
        pass
