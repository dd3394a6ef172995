"""The record formats of a run's logs, shared by the writer and the reader.

metrics.jsonl holds one compact JSON object per line; scalars.bin holds fixed-size little-endian
records (key, check, time, step, value). See profiles/store.py for why the logs look like this.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from pathlib import Path
from typing import Any, Iterable

# key (uint32), check (uint32 = key ^ MAGIC), wall time (float64), step (int64), value (float64)
SCALAR_FORMAT = "<IIdqd"
SCALAR_SIZE = struct.calcsize(SCALAR_FORMAT)
SCALAR_MAGIC = 0x5350494E  # "SPIN": a zero-filled or misaligned record fails the check
pack_scalar = struct.Struct(SCALAR_FORMAT).pack


@functools.lru_cache(maxsize=1)
def scalar_dtype():
    """numpy dtype of one scalars.bin record (numpy is imported only by readers)."""
    import numpy as np

    return np.dtype([("key", "<u4"), ("check", "<u4"), ("time", "<f8"), ("step", "<i8"), ("value", "<f8")])


def json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def clean(value: Any) -> Any:
    """JSON has no NaN/inf; keep them readable as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_number(value: Any) -> Any:
    """A statistic as the logs keep it: integers (numpy's too) stay integers, other numbers become
    floats (NaN and inf: None), anything else is left as it is."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy and torch scalars
    if isinstance(value, float):
        return clean(value)
    return value


def dumps(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"), default=json_default, allow_nan=False)


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
