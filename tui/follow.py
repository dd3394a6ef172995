"""Headless following of a run: a Rich progress bar and one line per epoch, read from the run store.

Used by `spintui train --headless` (and whenever stdout is not a terminal). It reads the run
directory like any viewer, so the trainer process never knows it is being watched.
"""

from __future__ import annotations

import math
import signal
import time
from collections import deque
from pathlib import Path
from statistics import fmean

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from spintui.profiles.processes import request_clean_stop
from spintui.profiles.run_reader import RunReader
from spintui.profiles.store import effective_status
from spintui.tui.profile_data import trace_text

POLL_S = 0.5
MEAN_OF_EPISODES = 10  # the progress bar's return is the mean of this many latest training episodes

EPOCH_COLUMNS = ("AverageEpRet", "AverageTestEpRet", "LossPi", "LossQ", "LossV", "KL", "Alpha", "StepsPerSec")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _epoch_line(rec: dict) -> str:
    stats = rec.get("stats") if isinstance(rec.get("stats"), dict) else {}
    step = rec.get("step", 0)
    parts = [f"epoch {rec.get('epoch')}", f"step {step:,}" if _is_number(step) else "step ?"]
    for key in EPOCH_COLUMNS:
        value = stats.get(key)
        if _is_number(value):
            parts.append(f"{key} {value:.4g}")
    return "  ".join(parts)


def follow_run(run_dir: Path, proc=None, console: Console | None = None, stop_on_interrupt: bool = True) -> str:
    """Show progress until the run ends; Ctrl-C asks the trainer for a clean stop. Returns the status.

    With `stop_on_interrupt=False` (a viewer that did not start the run) Ctrl-C only stops following.
    """
    console = console or Console(stderr=False)
    reader = RunReader(run_dir)
    interrupted = {"n": 0}

    def _on_sigint(signum, frame):
        interrupted["n"] += 1
        request_clean_stop(run_dir, proc)

    previous = signal.signal(signal.SIGINT, _on_sigint if stop_on_interrupt else signal.default_int_handler)
    try:
        # Read the run (and import what reading needs) before the first line: whoever sees that line
        # and presses Ctrl-C then interrupts the follow loop, not a half-finished import.
        update = reader.poll()  # its records are shown too: a short run may have logged everything already
        console.print(f"run [bold]{run_dir.name}[/] in {run_dir.parent}")
        recent_returns: deque[float] = deque(maxlen=MEAN_OF_EPISODES)
        status = "running"
        progress = Progress(
            TextColumn("[bold]{task.fields[algo]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} steps/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[ret]}"),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        manifest = update.manifest or {}
        total = (manifest.get("progress") or {}).get("total_steps")
        task = progress.add_task("train", total=total, algo=manifest.get("algo") or manifest.get("benchmark") or "",
                                 rate="-", ret="")
        stop_notice = False

        def show(records) -> None:
            for rec in records:
                if rec.get("kind") == "epoch":
                    progress.console.print(_epoch_line(rec))
                elif rec.get("kind") == "resume" and _is_number(rec.get("step")):
                    progress.console.print(f"resumed from the checkpoint at step {rec['step']:,} "
                                           f"(epoch {rec.get('epoch')}); later records of the previous trainer "
                                           f"are superseded")
                elif rec.get("kind") == "trace":  # --trace: the captured blocks' top operations
                    progress.console.print(trace_text(rec, progress.console.width, top=12))
                elif rec.get("kind") == "event" and rec.get("level") in ("warning", "error"):
                    progress.console.print(f"[yellow]{rec.get('message')}")
                elif rec.get("kind") == "episode" and not rec.get("test") and _is_number(rec.get("ret")):
                    recent_returns.append(float(rec["ret"]))

        with progress:
            while True:
                show(update.records)
                m = reader.manifest
                p = m.get("progress") or {}
                if p.get("total_steps"):
                    progress.update(task, total=p["total_steps"])
                if p.get("step") is not None:
                    progress.update(task, completed=p["step"])
                if p.get("steps_per_sec") is not None:
                    progress.update(task, rate=f"{p['steps_per_sec']:.0f}")
                if recent_returns:
                    progress.update(task, ret=f"mean return {fmean(recent_returns):.1f} ({len(recent_returns)} ep)")
                if interrupted["n"] and not stop_notice:
                    progress.console.print("[yellow]stopping: finishing the step and saving a checkpoint...")
                    stop_notice = True
                status = effective_status(m)  # re-checked every POLL_S: a dead trainer shows at once
                exited = proc is not None and proc.poll() is not None
                # Our process lives on but the run's writer was another one (rank 0 under the
                # data-parallel launcher, or a trainer yet to claim the run): it records the outcome.
                launcher_left = proc is not None and not exited and status == "crashed" and m.get("pid") != proc.pid
                if (status != "running" and not launcher_left) or exited:
                    if exited and status in ("running", "crashed"):
                        time.sleep(0.3)  # let the final manifest land
                    show(reader.poll().records)  # whatever landed since the last poll
                    status = effective_status(reader.manifest)
                    if exited and status in ("running", "crashed"):
                        status = "failed"
                    break
                time.sleep(POLL_S)
                update = reader.poll()
    finally:
        signal.signal(signal.SIGINT, previous)
    p = reader.manifest.get("progress") or {}
    summary = f"{status}: {p.get('step', 0):,} steps"
    if _is_number(p.get("test_return")):
        summary += f", test return {p['test_return']:.1f}"
    if recent_returns:
        summary += f", mean return of the last {len(recent_returns)} episodes {fmean(recent_returns):.1f}"
    colour = {"finished": "green", "stopped": "yellow"}.get(status, "red")
    console.print(f"[{colour}]{summary}[/] -> {run_dir}")
    return status
