"""Producer processes: starting one for a run, asking it for a clean stop, and its own signal handling.

A producer (a trainer, a kernel sweep) is ``python -m MODULE RUN_DIR`` in its own session, so it
survives the terminal that started it and never shares a process with a viewer. Whoever wants it to
stop asks twice: a control file in the run directory (seen from any host that sees the run) and
SIGTERM to a process it started. The producer turns SIGTERM, SIGINT and SIGHUP into a clean stop
of its writer: finish the step or case, close the run as `stopped`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from spintui.profiles.store import RunPaths, request_stop

TRAINER_MODULE = "spintui.algos.launch"
SWEEP_MODULE = "spintui.profiles.kernel_sweep"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# --------------------------------------------------------------------------------------------------
# The side that starts and stops a producer


def start_producer(run_dir: Path, module: str) -> subprocess.Popen:
    """Start `python -m module RUN_DIR` as its own process in its own session, logging to output.log,
    so the producer survives this terminal and never shares a process with a viewer."""
    log = open(RunPaths(run_dir).output_log, "ab")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", module, str(run_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    finally:
        log.close()


def start_trainer(run_dir: Path) -> subprocess.Popen:
    """Start the trainer for a prepared run directory."""
    return start_producer(run_dir, TRAINER_MODULE)


def start_sweep(run_dir: Path) -> subprocess.Popen:
    """Start a profile sweep for a prepared run directory."""
    return start_producer(run_dir, SWEEP_MODULE)


def request_clean_stop(run_dir: Path | str, proc: subprocess.Popen | None = None) -> None:
    """Ask the run's producer to stop cleanly: the control file, plus SIGTERM to `proc` (a producer
    this process started) while it runs. The control file stays, for a producer that missed the signal."""
    request_stop(run_dir)
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except (ProcessLookupError, OSError):  # it exited in between
            pass


def wait_for_exit(proc: subprocess.Popen, timeout_s: float, cancel: threading.Event | None = None,
                  poll_s: float = 0.1) -> bool:
    """True once `proc` has exited; False at the timeout or as soon as `cancel` is set."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (cancel is not None and cancel.is_set()):
        if proc.poll() is not None:
            return True
        time.sleep(poll_s)
    return proc.poll() is not None


# --------------------------------------------------------------------------------------------------
# The producer's side


def producer_main(module: str, produce: Callable[[str], int | None], argv: list[str] | None = None) -> int:
    """The exit code of `python -m module RUN_DIR`, which runs `produce(RUN_DIR)` (its exit code, None for 0).

    2 and a usage line unless given exactly one argument; 130 on a KeyboardInterrupt; 1 and the
    traceback (into the run's output.log, where start_producer sends it) on any other exception.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m {module} RUN_DIR", file=sys.stderr)
        return 2
    try:
        return produce(argv[0]) or 0
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        return 1


def install_signal_handlers(handler: Callable) -> dict:
    """Route SIGTERM, SIGINT and SIGHUP to `handler`; returns the handlers it replaced.

    Outside the main thread (tests running a producer in a thread) nothing is installed.
    """
    previous = {}
    for sig in STOP_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            break
    return previous


def install_stop_handlers(writer, interrupt_twice: bool = False) -> dict:
    """SIGTERM, SIGINT and SIGHUP ask `writer` (anything with `request_stop()` and `stop_requested`)
    for a clean stop; returns the handlers it replaced, for `restore_handlers`.

    With `interrupt_twice`, a second SIGINT raises KeyboardInterrupt: for a producer whose unit of
    work (a sweep case) can take long enough that a user at the terminal would rather not wait.
    """
    def ask_stop(signum, frame):
        if interrupt_twice and signum == signal.SIGINT and writer.stop_requested:
            raise KeyboardInterrupt
        writer.request_stop()

    return install_signal_handlers(ask_stop)


def restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
