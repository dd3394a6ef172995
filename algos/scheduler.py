"""Run an experiment's unfinished runs: ``python -m spintui.algos.scheduler EXPERIMENT_DIR``.

The CLI creates the experiment (every run queued) and starts this module as its own process in its
own session, so closing the terminal or the dashboard leaves the experiment running. Locally it
keeps `parallel` trainers going, each its own process as a single run's is; with a Ray address it
submits one task per run to the cluster instead (algos/ray_backend.py). SIGTERM, SIGINT or SIGHUP
stop every running run cleanly (each saves a final checkpoint); queued runs stay queued for
`spintui train --resume EXPERIMENT`, which starts this module again.

It takes every run that is not finished and not running: queued ones, and stopped, crashed or
failed ones, which their trainer resumes from their latest checkpoint (a run without one starts
over; algos/launch.py). A run that ends while it is at work is not started again.

Waiting costs next to nothing: it sleeps on the children's exits and wakes once a second.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

from spintui.errors import RunError
from spintui.profiles.experiments import experiment_run_dirs, read_experiment, run_statuses, write_experiment
from spintui.profiles.processes import install_signal_handlers, request_clean_stop, restore_handlers, start_trainer
from spintui.profiles.provenance import host_name
from spintui.profiles.store import effective_status, read_manifest

TICK_S = 1.0
STOP_GRACE_S = 120.0
TO_RUN = ("queued", "stopped", "crashed", "failed")  # started by the trainer, which resumes from a checkpoint


class Scheduler:
    def __init__(self, exp_dir: Path | str):
        self.exp_dir = Path(exp_dir)
        self.data = read_experiment(self.exp_dir)
        settings = self.data.get("settings") or {}
        self.parallel = max(1, int(settings.get("parallel") or 1))
        self.ray_address = settings.get("ray")
        self.stop = threading.Event()
        self.running: dict[Path, object] = {}  # run dir -> Popen or Ray task

    def queued(self) -> list[Path]:
        """The runs to start: not finished and not running (a damaged run is left alone)."""
        out = []
        for run_dir in experiment_run_dirs(self.exp_dir, self.data):
            try:
                status = effective_status(read_manifest(run_dir))
            except RunError:
                continue
            if status in TO_RUN and run_dir not in self.running:
                out.append(run_dir)
        return out

    def _record(self, **fields) -> None:
        """Refresh experiment.json: each run's status and the scheduler's heartbeat."""
        statuses = run_statuses(self.exp_dir, self.data)
        for run in self.data["runs"]:
            run["status"] = statuses.get(run.get("name"), run.get("status"))
        self.data["scheduler"] = {**(self.data.get("scheduler") or {}), **fields, "heartbeat": time.time()}
        write_experiment(self.exp_dir, self.data)

    def run(self) -> int:
        self._record(pid=os.getpid(), host=host_name(), started=time.time(), ended=None,
                     backend="ray" if self.ray_address else "local")
        previous = install_signal_handlers(lambda signum, frame: self.stop.set())
        backend = None
        try:
            if self.ray_address:
                from spintui.algos.ray_backend import RayBackend

                backend = RayBackend(self.ray_address, self.exp_dir)
            queue = self.queued()
            last_beat = 0.0
            while not self.stop.is_set() and (queue or self.running):
                while queue and len(self.running) < (backend.capacity() if backend else self.parallel):
                    run_dir = queue.pop(0)
                    self.running[run_dir] = backend.submit(run_dir) if backend else start_trainer(run_dir)
                done = backend.finished(list(self.running.values()), TICK_S) if backend else \
                    [p for p in self.running.values() if p.poll() is not None]
                for run_dir in [d for d, p in self.running.items() if p in done]:
                    del self.running[run_dir]
                    last_beat = 0.0  # record the change now
                if time.monotonic() - last_beat > 5:
                    last_beat = time.monotonic()
                    self._record()
                if not backend:
                    self.stop.wait(TICK_S)
            if self.stop.is_set():
                self.stop_all(backend)
        finally:
            restore_handlers(previous)
            self._record(ended=time.time())
            if backend is not None:
                backend.close()
        return 0

    def stop_all(self, backend) -> None:
        """Ask every running run for a clean stop and wait for them (a second signal stops waiting)."""
        for run_dir, proc in self.running.items():
            if backend:
                backend.stop(proc)
            else:
                request_clean_stop(run_dir, proc)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.running and time.monotonic() < deadline:
            done = backend.finished(list(self.running.values()), TICK_S) if backend else \
                [p for p in self.running.values() if p.poll() is not None]
            self.running = {d: p for d, p in self.running.items() if p not in done}
            if not backend:
                time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m spintui.algos.scheduler EXPERIMENT_DIR", file=sys.stderr)
        return 2
    try:
        return Scheduler(argv[0]).run()
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
