"""Starting and following an experiment: `spintui train` with an option that has several values.

The experiment and all its runs (queued) are created only after every point's config was checked;
then the scheduler starts as its own process, so the experiment outlives this terminal. Headless,
this prints a progress line per finished run and the experiment's progress; Ctrl-C stops every run
cleanly (each saves a final checkpoint).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from spintui.errors import CommandFailed, RunError

SCHEDULER_MODULE = "spintui.algos.scheduler"
POLL_S = 1.0


def default_parallel(configs) -> int:
    """As many runs as the cores allow at each run's threads (one when a run does not say)."""
    per_run = max((int(c.threads or 1) * int(getattr(c, "nproc", 1) or 1)) for c in configs)
    return max(1, (os.cpu_count() or 1) // per_run)


def share_cores(configs, parallel: int, ray: bool) -> list:
    """Spinning Up's rule for runs that do not set --threads: the cores split evenly among the runs that
    run at once (on Ray, the one CPU such a run asks for). Recorded in each run's config."""
    threads = 1 if ray else max(1, (os.cpu_count() or 1) // parallel)
    return [c if c.threads is not None else dataclasses.replace(c, threads=threads) for c in configs]


def experiment_name(algo: str, configs) -> str:
    envs = sorted({c.env for c in configs})
    label = envs[0] if len(envs) == 1 else "grid"
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in f"{stamp}_{algo}_{label}")


def start_experiment(spec, opts, runs_dir: Path, varying: list[str], grid: dict, points, configs) -> None:
    from spintui.algos.config import config_to_dict
    from spintui.profiles.experiments import create_experiment
    from spintui.profiles.processes import start_producer

    if opts.ray is not None:
        from spintui.algos.ray_backend import check_cluster

        check_cluster(opts.ray, runs_dir, [config_to_dict(c) for c in configs])
    parallel = opts.parallel or default_parallel(configs)
    configs = share_cores(configs, parallel, opts.ray is not None)
    name = opts.name or experiment_name(spec.name, configs)
    exp_dir = create_experiment(
        runs_dir, name, algo=spec.name, varying=varying,
        grid={k: [list(v) if isinstance(v, tuple) else v for v in dict.fromkeys(p.values[k] for p in points)]
              for k in varying},
        points=[{"name": p.name, "env": c.env, "seed": c.seed, "config": config_to_dict(c),
                 "values": {k: list(v) if isinstance(v, tuple) else v for k, v in p.values.items()}}
                for p, c in zip(points, configs)],
        argv=["spintui", *sys.argv[1:]], settings={"parallel": parallel, "ray": opts.ray})
    proc = start_producer(exp_dir, SCHEDULER_MODULE)
    where = f"on Ray ({opts.ray})" if opts.ray else f"{parallel} at a time"
    print(f"experiment {exp_dir.name}: {len(points)} runs over {', '.join(varying) or 'one point'}, {where}",
          file=sys.stderr)
    if not opts.headless and sys.stdout.isatty() and sys.stdin.isatty():
        from spintui.profiles.experiments import experiment_run_dirs
        from spintui.tui.app import run_dashboard

        run_dashboard(experiment_run_dirs(exp_dir))
        print(f"the experiment goes on; watch again with: spintui watch {exp_dir.name}", file=sys.stderr)
        return
    status = follow_experiment(exp_dir, proc)
    if status == "failed":
        raise CommandFailed(f"experiment {exp_dir.name}: some runs failed (see spintui runs {exp_dir.name} --all)")


def follow_experiment(exp_dir: Path, scheduler=None, console=None) -> str:
    """A progress bar over every run's steps and a line as each run ends, until the scheduler exits;
    Ctrl-C asks the scheduler to stop every run cleanly and waits for it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from spintui.profiles.experiments import FINAL, experiment_run_dirs, experiment_status, read_experiment
    from spintui.profiles.store import effective_status, read_manifest

    console = console or Console()
    data = read_experiment(exp_dir)
    run_dirs = experiment_run_dirs(exp_dir, data)
    reported: set[str] = set()
    interrupted = False

    def on_interrupt(signum, frame):
        nonlocal interrupted
        if scheduler is not None and scheduler.poll() is None:
            scheduler.send_signal(signal.SIGTERM)
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_interrupt) if scheduler is not None else None
    progress = Progress(TextColumn("[bold]{task.fields[counts]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("steps"), TimeElapsedColumn(), console=console, disable=not console.is_terminal)
    try:
        with progress:
            task = progress.add_task("experiment", total=None, counts="")
            notice = False
            while True:
                done = total = 0
                counts: dict[str, int] = {}
                for run_dir in run_dirs:
                    try:
                        manifest = read_manifest(run_dir)
                        status = effective_status(manifest)
                    except RunError:
                        manifest, status = {}, "damaged"
                    counts[status] = counts.get(status, 0) + 1
                    p = manifest.get("progress") or {}
                    total += int(p.get("total_steps") or (manifest.get("config") or {}).get("steps") or 0)
                    done += int(p.get("step") or 0)
                    if status in FINAL and run_dir.name not in reported:
                        reported.add(run_dir.name)
                        ret = p.get("last_return")
                        tail = f", return {ret:.1f}" if isinstance(ret, (int, float)) else ""
                        progress.console.print(f"{run_dir.name}: {status} at step {int(p.get('step') or 0):,}{tail}",
                                               markup=False)
                summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                progress.update(task, total=total or None, completed=done, counts=summary)
                if interrupted and not notice:
                    progress.console.print("stopping every run cleanly (final checkpoints) ...", markup=False)
                    notice = True
                live = scheduler.poll() is None if scheduler is not None else \
                    experiment_status(exp_dir, read_experiment(exp_dir)) == "running"
                if not live:
                    break
                time.sleep(POLL_S)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    status = experiment_status(exp_dir)
    console.print(f"experiment {exp_dir.name}: {status} ({summary})", markup=False)
    return status
