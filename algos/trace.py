"""`--trace N` / `--trace N:M`: which update blocks a run captures, and the trainers' hook.

A trainer asks `block_tracer(cfg, run, device)` once; with tracing off it gets None and its loop
does nothing more per block (`traced(None)` is a shared null context), and neither torch.profiler
work nor trace_capture.py is ever touched. With tracing on, the capture itself lives in
trace_capture.py.
"""

from __future__ import annotations

import contextlib
import re

from spintui.errors import ConfigError

_SPEC = re.compile(r"\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?")
_NULL = contextlib.nullcontext()


def parse_trace(text: str) -> tuple[int, int]:
    """'N' -> (N, N), 'N:M' -> (N, M); blocks count from 1."""
    match = _SPEC.fullmatch(str(text))
    if match is None:
        raise ConfigError(f"--trace: expected N or N:M (update blocks, from 1), got {text!r}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if first < 1 or last < 1:
        raise ConfigError(f"--trace: update blocks count from 1, got {text!r}")
    if last < first:
        raise ConfigError(f"--trace: the range {text!r} is reversed; write {last}:{first}")
    return first, last


def check_trace(text: str, blocks: int) -> str:
    """The canonical text of a --trace value this run can capture, else ConfigError."""
    first, last = parse_trace(text)
    if last > blocks:
        does = f"{blocks:,} update block{'' if blocks == 1 else 's'}" if blocks else "no update block"
        raise ConfigError(f"--trace: block {last:,} is beyond this run's last; it does {does}")
    return str(first) if first == last else f"{first}:{last}"


def block_tracer(cfg, run, device, native: bool = False, update: str = ""):
    """A BlockTracer (trace_capture.py) when `cfg.trace` asks for one (and `run` writes files), else None."""
    if getattr(cfg, "trace", None) is None or getattr(run, "run_dir", None) is None:
        return None
    from spintui.algos.trace_capture import BlockTracer

    first, last = parse_trace(cfg.trace)
    return BlockTracer(run, first, last, device, native=native, update=update)


def traced(tracer):
    """The context one update block runs in: the tracer's, or a null context when off."""
    return _NULL if tracer is None else tracer.block()
