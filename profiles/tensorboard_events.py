"""TensorBoard event files, written fast: whole scalar series are encoded at once with numpy.

An event file is a sequence of TFRecords (little-endian length, its masked CRC-32C, the data, the
data's masked CRC-32C) whose data are serialized `Event` protos. A scalar event is, byte for byte as
protobuf serializes it (tests check this against tensorboard's own protos)::

    Event    09 <wall_time f64>  10 <step varint>  2a <len> Summary
    Summary  0a <len> Value
    Value    0a <len> <tag>  15 <simple_value f32>

For one tag only the wall time, the step (whose varint length varies) and the value change, so a
series of records with equal step lengths is a matrix of bytes; its CRCs are computed column by
column over all rows at once. torch's SummaryWriter needs ~100 us per scalar here (a protobuf per
event and a pure-Python CRC), a million scalars take 100 s; this takes about a second.

The first record of a file is `file_version: "brain.Event:2"`, so TensorBoard's readers never drop
events whose steps go back (they only purge on a SessionLog START, which is never written).
Hyperparameters use the hparams plugin's own protos (the tensorboard package, the `tensorboard`
extra); scalars need only numpy.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from spintui.errors import UsageError

SUFFIX = ".spintui"  # marks the event files spintui wrote (and may replace)
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = int(_TABLE[(crc ^ byte) & 0xFF]) ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(crc):
    """TFRecord's CRC mask, for an int or an array of uint32."""
    if isinstance(crc, np.ndarray):
        return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of every row of a (records, bytes) uint8 matrix."""
    crc = np.full(len(rows), 0xFFFFFFFF, dtype=np.uint32)
    columns = np.ascontiguousarray(rows.T)
    for column in columns:
        crc = _TABLE[(crc ^ column) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as protobuf writes it: ten bytes
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def record(data: bytes) -> bytes:
    """One TFRecord around serialized bytes."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc(crc32c(header))) + data + struct.pack("<I", masked_crc(crc32c(data)))


def file_version_record(wall_time: float) -> bytes:
    version = b"brain.Event:2"
    return record(b"\x09" + struct.pack("<d", wall_time) + b"\x1a" + varint(len(version)) + version)


def scalar_records(tag: str, steps, times, values) -> bytes:
    """TFRecords of scalar events, one per point, in the order given."""
    steps = np.asarray(steps, dtype=np.int64).astype(np.uint64)
    times = np.asarray(times, dtype="<f8")
    values = np.asarray(values, dtype="<f4")
    if not len(steps):
        return b""
    tag_bytes = tag.encode()
    value_msg = b"\x0a" + varint(len(tag_bytes)) + tag_bytes + b"\x15"  # + 4 value bytes
    value_len = len(value_msg) + 4
    summary_len = 1 + len(varint(value_len)) + value_len
    middle = np.frombuffer(b"\x2a" + varint(summary_len) + b"\x0a" + varint(value_len) + value_msg, np.uint8)
    lengths = (steps != 0).astype(np.int64)  # step 0 is left out, as protobuf leaves out defaults
    for k in range(1, 10):
        lengths += (steps >> np.uint64(7 * k)) != 0
    cuts = np.flatnonzero(np.diff(lengths)) + 1
    parts = []
    for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(steps)]))):
        n = int(lengths[lo])
        parts.append(_block(steps[lo:hi], times[lo:hi], values[lo:hi], n, middle))
    return b"".join(parts)


def _block(steps: np.ndarray, times: np.ndarray, values: np.ndarray, n: int, middle: np.ndarray) -> bytes:
    """Records whose steps all take `n` varint bytes (0: step 0, not written): one row per record."""
    tagged = 1 + n if n else 0
    size = 9 + tagged + len(middle) + 4
    header = struct.pack("<Q", size)
    rows = np.empty((len(steps), 12 + size + 4), dtype=np.uint8)
    rows[:, :8] = np.frombuffer(header, np.uint8)
    rows[:, 8:12] = np.frombuffer(struct.pack("<I", masked_crc(crc32c(header))), np.uint8)
    data = rows[:, 12:12 + size]
    data[:, 0] = 0x09
    data[:, 1:9] = times.view(np.uint8).reshape(-1, 8)
    if n:
        data[:, 9] = 0x10
    for k in range(n):
        byte = (steps >> np.uint64(7 * k)) & np.uint64(0x7F)
        data[:, 10 + k] = (byte | np.uint64(0x80 if k < n - 1 else 0)).astype(np.uint8)
    data[:, 9 + tagged:9 + tagged + len(middle)] = middle
    data[:, -4:] = values.view(np.uint8).reshape(-1, 4)
    rows[:, -4:] = masked_crc(crc32c_rows(data)).astype("<u4").view(np.uint8).reshape(-1, 4)
    return rows.tobytes()


# --------------------------------------------------------------------------------------------------
# Hyperparameters (the hparams plugin)


def require_tensorboard(what: str, log_dir: Path | None = None) -> None:
    """UsageError (one line, exit 2) when the tensorboard package is not installed, or when
    `log_dir` is a file."""
    if log_dir is not None and log_dir.exists() and not log_dir.is_dir():
        raise UsageError(f"{what} {log_dir} is a file, not a directory")
    try:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs the tensorboard package: pip install 'spintui[tensorboard]'") from None


def hparam_values(config: dict) -> dict:
    """A run's config as hparams values: numbers, booleans and text (lists joined by commas)."""
    out = {}
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        elif not isinstance(value, (bool, int, float, str)):
            value = str(value)
        out[key] = value
    return out


def hparams_records(hparams: dict, metric_tags: list[str], trial: str, start_time: float,
                    wall_time: float) -> bytes:
    """The experiment (hparams and metric tags) and this run's session start, as TFRecords."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    values = hparam_values(hparams)
    experiment = api_pb2.Experiment(
        hparam_infos=[api_pb2.HParamInfo(name=k) for k in sorted(values)],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metric_tags],
        time_created_secs=start_time)
    session = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=start_time)
    for key in sorted(values):
        value = values[key]
        if isinstance(value, bool):
            session.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            session.hparams[key].number_value = value
        else:
            session.hparams[key].string_value = value
    out = b""
    for tag, data in ((metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
                      (metadata.SESSION_START_INFO_TAG,
                       plugin_data_pb2.HParamsPluginData(session_start_info=session))):
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
        body = summary.SerializeToString()
        out += record(b"\x09" + struct.pack("<d", wall_time) + b"\x2a" + varint(len(body)) + body)
    return out


# --------------------------------------------------------------------------------------------------
# Files


class EventFile:
    """An event file of its own in `log_dir`, appended to with whole records."""

    def __init__(self, log_dir: Path | str, replace: bool = True):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if replace:  # a re-export or a resumed mirror rewrites everything: no doubled points
            for old in self.log_dir.glob(f"events.out.tfevents.*{SUFFIX}"):
                old.unlink(missing_ok=True)
        now = time.time()
        self.path = self.log_dir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}{SUFFIX}"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.write(file_version_record(now))

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "EventFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
