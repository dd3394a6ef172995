"""The live dashboard: `spintui watch RUN ...`, `spintui train ...` and `spintui profile ...` in a terminal.

Training runs get the training dashboard (tui/train_dashboard.py), profile runs the profile
dashboard (tui/profile_dashboard.py); both are built on tui/dashboard_base.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spintui.errors import RunError, UsageError
from spintui.profiles.store import read_manifest
from spintui.tui.dashboard_base import DashboardBase
from spintui.tui.data import Preload
from spintui.tui.profile_dashboard import ProfileDashboard
from spintui.tui.train_dashboard import TrainDashboard

DASHBOARDS: dict[str, type[DashboardBase]] = {"train": TrainDashboard, "profile": ProfileDashboard}


def dashboard_class(run_dirs: list[Path | str]) -> type[DashboardBase]:
    """The dashboard for the runs' kind (their manifests' `kind`); runs of different kinds are an error."""
    if not run_dirs:
        raise RunError("no runs to watch")
    kinds = {str(read_manifest(p).get("kind") or "train") for p in run_dirs}
    if len(kinds) > 1:
        raise UsageError(f"cannot watch {' and '.join(sorted(kinds))} runs together; give runs of one kind")
    kind = kinds.pop()
    if kind not in DASHBOARDS:
        raise UsageError(f"no dashboard for runs of kind {kind!r}; kinds: {', '.join(DASHBOARDS)}")
    return DASHBOARDS[kind]


def run_dashboard(run_dirs: list[Path | str], owned=None, preload: Preload | None = None) -> str:
    """Show the dashboard until the user quits; returns closed, detached or stopped.

    `owned` is the producer's Popen when this viewer started it: quitting then asks stop or detach.
    `preload` is a `Preload` of the same runs started before Textual was imported.
    """
    app = dashboard_class(run_dirs)(run_dirs, owned=owned, preload=preload)
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
