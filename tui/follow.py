"""Headless following of a run: a Rich progress bar and one line per epoch, read from the run store.

Used by `spintui train --headless` (and whenever stdout is not a terminal). It reads the run
directory like any viewer, so the trainer process never knows it is being watched.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from spintui.profiles.store import RunReader, effective_status, request_stop

POLL_S = 0.5

EPOCH_COLUMNS = ("AverageEpRet", "AverageTestEpRet", "LossPi", "LossQ", "LossV", "KL", "Alpha", "StepsPerSec")


def _epoch_line(rec: dict) -> str:
    stats = rec.get("stats", {})
    parts = [f"epoch {rec.get('epoch')}", f"step {rec.get('step', 0):,}"]
    for key in EPOCH_COLUMNS:
        value = stats.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.4g}")
    return "  ".join(parts)


def follow_run(run_dir: Path, proc=None, console: Console | None = None, stop_on_interrupt: bool = True) -> str:
    """Show progress until the run ends; Ctrl-C asks the trainer for a clean stop. Returns the status.

    With `stop_on_interrupt=False` (a viewer that did not start the run) Ctrl-C only stops following.
    """
    console = console or Console(stderr=False)
    reader = RunReader(run_dir)
    console.print(f"run [bold]{run_dir.name}[/] in {run_dir.parent}")
    interrupted = {"n": 0}

    def _on_sigint(signum, frame):
        interrupted["n"] += 1
        request_stop(run_dir)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGINT, _on_sigint if stop_on_interrupt else signal.default_int_handler)
    last_return = None
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
    manifest = reader.poll().manifest or {}
    total = (manifest.get("progress") or {}).get("total_steps")
    task = progress.add_task("train", total=total, algo=manifest.get("algo") or manifest.get("benchmark") or "",
                             rate="-", ret="")
    stop_notice = False
    try:
        with progress:
            while True:
                update = reader.poll()
                for rec in update.records:
                    if rec.get("kind") == "epoch":
                        progress.console.print(_epoch_line(rec))
                    elif rec.get("kind") == "event" and rec.get("level") in ("warning", "error"):
                        progress.console.print(f"[yellow]{rec.get('message')}")
                    elif rec.get("kind") == "episode" and not rec.get("test"):
                        last_return = rec.get("ret")
                m = reader.manifest
                p = m.get("progress") or {}
                if p.get("total_steps"):
                    progress.update(task, total=p["total_steps"])
                if p.get("step") is not None:
                    progress.update(task, completed=p["step"])
                if p.get("steps_per_sec") is not None:
                    progress.update(task, rate=f"{p['steps_per_sec']:.0f}")
                ret = p.get("last_return", last_return)
                if ret is not None:
                    progress.update(task, ret=f"return {ret:.1f}")
                if interrupted["n"] and not stop_notice:
                    progress.console.print("[yellow]stopping: finishing the step and saving a checkpoint...")
                    stop_notice = True
                status = effective_status(m)
                exited = proc is not None and proc.poll() is not None
                if status != "running" or exited:
                    if exited and status == "running":
                        time.sleep(0.3)  # let the final manifest land, then read it once more
                        reader.poll()
                        status = reader.manifest.get("status", "failed")
                        if status == "running":
                            status = "failed"
                    break
                time.sleep(POLL_S)
    finally:
        signal.signal(signal.SIGINT, previous)
    p = reader.manifest.get("progress") or {}
    summary = f"{status}: {p.get('step', 0):,} steps"
    if p.get("last_return") is not None:
        summary += f", last mean return {p['last_return']:.1f}"
    colour = {"finished": "green", "stopped": "yellow"}.get(status, "red")
    console.print(f"[{colour}]{summary}[/] -> {run_dir}")
    return status
