"""A run's GPU history: the `gpu` records its producer logs at 1 Hz (GpuLogger), and their series.

Record (metrics.jsonl, kind "gpu")::

    {"time", "trainer_match": "matched" | why not, "own_memory": bytes | absent,
     "gpus": [{"index", "name", "utilization" (%), "memory_used", "memory_total" (bytes), "power_w",
               "power_limit_w", "temperature_c", "sm_clock_mhz", "trainer_memory" (bytes | null),
               "process_count", "processes": [the trainer's own process, when NVML matched it]}]}

`trainer_memory` is what NVML reports for the producer's process; `own_memory` what the producer's
framework holds (torch's reserved memory), which is there even where NVML cannot match the process
(containers). Because the history is in the run, a viewer shows the same GPU panel live, after the
run, on a copy, or from another host. Also here: a sampler that replays recorded samples through
the NVML sampler's interface (tests, benchmarks, demos). Imports neither torch nor Textual.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from spintui.profiles.gpu import GpuInfo, GpuProcess, GpuSample

SERIES = ("utilization", "memory_used", "trainer_memory", "power_w", "temperature_c", "sm_clock_mhz")
MAX_POINTS = 20_000  # beyond this the history is halved (every second point), so memory stays bounded
_INFO = ("index", "name", "utilization", "memory_used", "memory_total", "power_w", "power_limit_w",
         "temperature_c", "sm_clock_mhz")


def gpu_record(sample: GpuSample, own_memory: int | None = None) -> dict:
    """The fields of one `gpu` record (without its kind) from an NVML sample."""
    gpus = []
    for g in sample.gpus:
        d = {k: getattr(g, k) for k in _INFO}
        mine = [p for p in g.processes if p.is_trainer]
        d["trainer_memory"] = sum(p.used_bytes or 0 for p in mine) if mine else None
        d["process_count"] = len(g.processes)
        d["processes"] = [asdict(p) for p in mine]
        gpus.append(d)
    rec = {"time": sample.time, "gpus": gpus, "trainer_match": sample.trainer_match}
    if own_memory is not None:
        rec["own_memory"] = int(own_memory)
    return rec


def sample_from_record(record: dict) -> GpuSample:
    """A logged record as a GpuSample (what the panel's text takes)."""
    gpus = []
    for g in record.get("gpus") or []:
        procs = [GpuProcess(**{k: v for k, v in p.items() if k in ("pid", "used_bytes", "name", "is_trainer")})
                 for p in g.get("processes") or []]
        gpus.append(GpuInfo(**{k: g.get(k) for k in _INFO if k in g}, processes=procs))
    return GpuSample(record.get("time", 0.0), gpus, record.get("trainer_match", ""))


class GpuHistory:
    """Series of every GPU from a run's `gpu` records, appended as they arrive (bounded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: dict[int, dict[str, list]] = {}
        self.own_memory: list = []
        self.last: dict | None = None
        self.count = 0  # records taken, also those halved away
        self._view: tuple | None = None  # ((count, points), the view built for them)

    def __len__(self) -> int:
        return len(self.times)

    def add(self, record: dict) -> None:
        t = record.get("time")
        if not isinstance(t, (int, float)):
            return
        n = len(self.times)
        self.times.append(float(t))
        self.own_memory.append(record.get("own_memory"))
        for g in record.get("gpus") or []:
            series = self.values.setdefault(int(g.get("index", 0)), {k: [None] * n for k in SERIES})
            for k in SERIES:
                series[k].append(g.get(k))
        for series in self.values.values():  # a GPU missing from this record
            for k in SERIES:
                if len(series[k]) < n + 1:
                    series[k].append(None)
        self.last = record
        self.count += 1
        if len(self.times) > MAX_POINTS:
            self.times = self.times[::2]
            self.own_memory = self.own_memory[::2]
            for series in self.values.values():
                for k in SERIES:
                    series[k] = series[k][::2]

    def state(self) -> dict:
        """Everything, as JSON (a viewer's cache of parsed runs keeps it)."""
        return {"times": self.times, "own_memory": self.own_memory, "last": self.last, "count": self.count,
                "values": {str(i): v for i, v in self.values.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "GpuHistory":
        out = cls()
        out.times, out.own_memory = list(state["times"]), list(state["own_memory"])
        out.last, out.count = state["last"], int(state["count"])
        out.values = {int(i): {k: list(v[k]) for k in SERIES} for i, v in state["values"].items()}
        return out

    def view(self, points: int = 256) -> dict:
        """A small copy for one frame: each series reduced to at most `points` bucket means, the span
        in seconds and the newest record ({} when there is no history)."""
        if not self.times:
            return {}
        if self._view is not None and self._view[0] == (self.count, points):
            return self._view[1]  # frames are rebuilt for any new record, GPU samples come once a second
        n = len(self.times)
        edges = [round(i * n / min(points, n)) for i in range(min(points, n) + 1)]
        view = {
            "span_s": self.times[-1] - self.times[0], "samples": self.count, "last": self.last,
            "own_memory": _buckets(self.own_memory, edges),
            "gpus": {i: {k: _buckets(v, edges) for k, v in series.items()} for i, series in self.values.items()},
        }
        self._view = ((self.count, points), view)
        return view


def _buckets(values: list, edges: list[int]) -> list:
    out = []
    for a, b in zip(edges, edges[1:]):
        chunk = [v for v in values[a:b] if isinstance(v, (int, float))]
        out.append(sum(chunk) / len(chunk) if chunk else None)
    return out


class RecordedGpuSampler:
    """Replays recorded samples (a list of `gpu_record` dicts, or a JSON file of them) through the
    NVML sampler's interface, one per `sample()` call, looping; the times are now's."""

    def __init__(self, records: list[dict] | Path | str):
        if not isinstance(records, list):
            records = json.loads(Path(records).read_text())
        if not records:
            raise ValueError("no recorded GPU samples")
        self.records, self.calls, self.closed = records, 0, False

    def sample(self, trainer_pid: int | None = None, trainer_host: str | None = None) -> GpuSample:
        rec = self.records[self.calls % len(self.records)]
        self.calls += 1
        sample = sample_from_record(rec)
        sample.time = time.time()
        for g in sample.gpus:
            for p in g.processes:
                if p.is_trainer and trainer_pid is not None:
                    p.pid = trainer_pid
        return sample

    def close(self) -> None:
        self.closed = True

    def opener(self):
        """What GpuLogger's `open_sampler` takes."""
        return lambda: (self, "")
