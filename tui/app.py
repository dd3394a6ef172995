"""The live dashboard: `spintui watch RUN ...`, `spintui train ...` and `spintui profile ...` in a terminal.

A training run gets the training dashboard (tui/train_dashboard.py); an experiment, or several
training runs, the experiment dashboard (tui/experiment_dashboard.py: runs grouped by
configuration); profile runs the profile dashboard (tui/profile_dashboard.py). All are built on
tui/dashboard_base.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spintui.errors import RunError, UsageError
from spintui.profiles.experiments import common_experiment
from spintui.profiles.store import read_manifest
from spintui.tui.dashboard_base import DashboardBase
from spintui.tui.data import Preload
from spintui.tui.experiment_dashboard import ExperimentDashboard
from spintui.tui.profile_dashboard import ProfileDashboard
from spintui.tui.run_groups import grouped, runs_kind
from spintui.tui.train_dashboard import TrainDashboard

DASHBOARDS: dict[str, type[DashboardBase]] = {"train": TrainDashboard, "profile": ProfileDashboard}


def dashboard_class(run_dirs: list[Path | str], experiment: Path | None = None) -> type[DashboardBase]:
    """The dashboard for the runs' kind; an experiment or several training runs are shown grouped."""
    kind = runs_kind(run_dirs)
    if kind not in DASHBOARDS:
        raise UsageError(f"no dashboard for runs of kind {kind!r}; kinds: {', '.join(DASHBOARDS)}")
    return ExperimentDashboard if grouped(run_dirs, experiment) else DASHBOARDS[kind]


def run_dashboard(run_dirs: list[Path | str], owned=None, preload: Preload | None = None,
                  experiment: Path | None = None) -> str:
    """Show the dashboard until the user quits; returns closed, detached or stopped.

    `owned` is the producer's Popen when this viewer started it: quitting then asks stop or detach.
    `preload` is a `Preload` of the same runs started before Textual was imported. `experiment`
    is the experiment the runs make up (default: for several runs, the one that holds them all, if any).
    """
    if experiment is None and len(run_dirs) > 1:
        experiment = common_experiment(run_dirs)
    cls = dashboard_class(run_dirs, experiment)
    extra = {"experiment": experiment} if cls is ExperimentDashboard else {}
    app = cls(run_dirs, owned=owned, preload=preload, **extra)
    app.yield_cpu = True
    app.run()
    name = Path(run_dirs[0]).name
    if owned is not None:
        if app.outcome == "stopped" or (owned.poll() is not None):
            try:
                status = read_manifest(run_dirs[0]).get("status", "unknown")
            except RunError:
                status = "unknown"
            print(f"run {name}: {status}", file=sys.stderr)
        elif app.outcome == "detached":
            print(f"detached: training goes on (pid {owned.pid}); watch again with: spintui watch {name}",
                  file=sys.stderr)
    return app.outcome
