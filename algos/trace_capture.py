"""Capturing update blocks with torch.profiler (`--trace`); imported only when a run traces.

The profiler starts at the first traced block and stops after the last, so the trace holds those
blocks' update work and whatever ran between them (acting, env steps) in one timeline. Each block
is a span named 'update block N'. Where the update runs in the compiled C library, torch.profiler
sees no operators inside it, so the C update times its own phases (native_phases.py) and they
become rows of the table and slices inside each block's span. On CUDA the blocks' device work is
waited for at the end of each traced block, so the block's wall time includes it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch

from spintui.algos import native_phases
from spintui.profiles import trace_table

LABEL = "update block"


def _is_device(avg) -> bool:
    return str(getattr(avg, "device_type", "")).rsplit(".", 1)[-1] in ("CUDA", "PrivateUse1", "MTIA", "XPU")


def op_totals(averages) -> list[dict]:
    """torch.profiler key_averages() as plain op totals (trace_table.table_rows' input), in seconds."""
    ops = []
    for a in averages:
        if a.key.startswith(LABEL + " "):
            continue
        if _is_device(a):
            self_us = getattr(a, "self_device_time_total", None)
            total_us = getattr(a, "device_time_total", None)
            if self_us is None:  # older torch names
                self_us, total_us = a.self_cuda_time_total, a.cuda_time_total
            source = "cuda"
        else:
            self_us, total_us, source = a.self_cpu_time_total, a.cpu_time_total, "cpu"
        ops.append({"name": a.key, "source": source, "calls": a.count, "self_s": self_us / 1e6,
                    "total_s": total_us / 1e6, "flops": getattr(a, "flops", 0) or None})
    return ops


class BlockTracer:
    """Wrap each update block in `block()`; captures blocks first..last (from 1) of the run."""

    def __init__(self, run, first: int, last: int, device: torch.device, native: bool = False,
                 update: str = ""):
        self.run, self.first, self.last, self.device = run, first, last, torch.device(device)
        self.native, self.update = native, update
        self.index = 0
        self.done = False
        self.update_s = 0.0
        self.phases: dict[int, list[tuple[str, float, int]]] = {}
        self._prof = None

    @contextlib.contextmanager
    def block(self):
        self.index += 1
        i = self.index
        if self.done or not self.first <= i <= self.last:
            yield
            return
        if self._prof is None:
            self._start()
        if self.native:
            native_phases.start()
        start = time.perf_counter()
        try:
            with torch.profiler.record_function(f"{LABEL} {i}"):
                yield
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
        finally:
            self.update_s += time.perf_counter() - start
            if self.native:
                self.phases[i] = native_phases.stop()
        if i == self.last:
            self.finish()

    def _start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._prof = profile(activities=activities, with_flops=True)
        self._prof.__enter__()

    def finish(self) -> dict | None:
        """Stop, write the trace and log the table; also called when training ends before the last block."""
        if self._prof is None or self.done:
            return None
        self.done = True
        self._prof.__exit__(None, None, None)
        ops = op_totals(self._prof.key_averages())
        totals: dict[str, list] = {}
        for phases in self.phases.values():
            for name, seconds, calls in phases:
                entry = totals.setdefault(name, [0.0, 0])
                entry[0] += seconds
                entry[1] += calls
        ops += [{"name": name, "source": native_phases.SOURCE, "calls": calls, "self_s": s, "total_s": s}
                for name, (s, calls) in totals.items()]
        rows = trace_table.table_rows(ops, self.update_s)
        last = min(self.last, self.index)
        spec = str(self.first) if last == self.first else f"{self.first}-{last}"
        path = self._write_trace(Path(self.run.run_dir) / f"trace-{spec}.json.gz")
        record = {"file": path.name, "blocks": [self.first, last], "update_s": self.update_s,
                  "device": self.device.type, "update": self.update, "rows": rows}
        self.run.log("trace", **record)
        top = ", ".join(f"{r['name']} {r['share']:.0%}" for r in rows[:4] if r.get("share") is not None)
        self.run.event(f"trace of update block{'s' if last > self.first else ''} {spec.replace('-', ' to ')}: "
                       f"{path.name}, {self.update_s * 1e3:.1f} ms of updates; largest: {top}")
        self._prof = None
        return record

    def _write_trace(self, dest: Path) -> Path:
        raw = dest.with_name(dest.name.replace(".json.gz", f".raw-{os.getpid()}.json"))
        self._prof.export_chrome_trace(str(raw))
        try:
            import json

            events = json.loads(raw.read_text()).get("traceEvents", [])
            spans = trace_table.block_spans(events, LABEL)
            extra = [ev for i, span in sorted(spans.items())
                     for ev in trace_table.phase_slices(span, self.phases.get(i, []), native_phases.SOURCE)]
            return trace_table.write_trace(raw, dest, extra)
        finally:
            raw.unlink(missing_ok=True)
