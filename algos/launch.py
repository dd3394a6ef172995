"""Run a training job for a run directory that the CLI prepared: ``python -m spintui.algos.launch RUN_DIR``.

The CLI creates the run (manifest with the resolved config) and starts this module as its own
process, in its own session, so training never shares a process with a viewer and outlives the
terminal that started it. Each algorithm module exposes ``train(cfg, run)`` where ``run`` is a
``RunWriter``; it returns when done or when ``run.stop_requested`` becomes true (after a final
checkpoint). Nothing here imports Textual or Rich.
"""

from __future__ import annotations

import importlib
import signal
import sys
import traceback
from pathlib import Path

from spintui.algos.config import config_from_manifest
from spintui.profiles.store import RunWriter, read_manifest


def train_run(run_dir: Path | str) -> str:
    """Train the run in `run_dir` in this process; returns the final status."""
    manifest = read_manifest(run_dir)
    cfg = config_from_manifest(manifest)
    module = importlib.import_module(f"spintui.algos.{manifest['algo']}")
    writer = RunWriter(run_dir)

    def _ask_stop(signum, frame):  # a clean stop: finish the step, checkpoint, status `stopped`
        writer.request_stop()

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, _ask_stop)
        except ValueError:  # not the main thread (tests calling train_run from a thread)
            break
    try:
        module.train(cfg, writer)
    except BaseException as exc:
        writer.close("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status = "stopped" if writer.stop_requested else "finished"
    writer.close(status)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m spintui.algos.launch RUN_DIR", file=sys.stderr)
        return 2
    try:
        train_run(argv[0])
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
