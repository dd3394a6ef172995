"""What `spintui runs` lists: a row per run and per experiment, and the table it prints.

An experiment is one row (kind `experiment`: its algo, envs, status, runs finished of all, age);
with `--all`, or when experiments are named, its runs follow it, each named `EXP/RUN` as
`spintui watch` takes it. Every row has
an `experiment` key: the experiment a run is in, null for a run outside one and for the
experiment rows themselves (which add `runs_done` and `runs_total`).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spintui.errors import RunError
from spintui.profiles.experiments import experiment_run_dirs, experiment_status, list_experiments, read_experiment
from spintui.profiles.runs import RunInfo, format_age, list_runs
from spintui.profiles.store import DAMAGED, effective_status, read_manifest

STATUS_COLOURS = {"running": "green", "finished": "blue", "failed": "red", "crashed": "red bold",
                  "stopped": "yellow", "damaged": "magenta", "queued": "cyan"}


def run_row(r: RunInfo, now: float) -> dict:
    m = r.manifest
    progress = m.get("progress") or {}
    return {
        "name": r.name, "path": str(r.path), "kind": m.get("kind"),
        "algo": m.get("algo") or m.get("benchmark"), "env": m.get("env"), "status": r.status,
        "reason": r.reason, "steps": progress.get("step"), "total_steps": progress.get("total_steps"),
        "last_return": progress.get("last_return"), "start_time": m.get("start_time"),
        "age_s": round(now - r.start_time, 1) if r.start_time else None, "experiment": r.experiment,
    }


def experiment_row(exp_dir: Path, now: float) -> dict:
    """The experiment's one line; a damaged experiment.json gives status damaged and the reason."""
    row = {"name": exp_dir.name, "path": str(exp_dir), "kind": "experiment", "algo": None, "env": None,
           "status": DAMAGED, "reason": None, "steps": None, "total_steps": None, "last_return": None,
           "start_time": None, "age_s": None, "experiment": None, "runs_done": None, "runs_total": None}
    try:
        data = read_experiment(exp_dir)
    except RunError as exc:
        return {**row, "reason": str(exc).replace(f"{exp_dir}/", "").replace(f"{exp_dir} ", "")}
    statuses, envs = {}, []
    for run_dir in experiment_run_dirs(exp_dir, data):
        try:
            manifest = read_manifest(run_dir)
        except RunError:
            statuses[run_dir.name] = DAMAGED
            continue
        statuses[run_dir.name] = effective_status(manifest, now)
        if manifest.get("env") and manifest["env"] not in envs:
            envs.append(manifest["env"])
    created = data.get("created")
    created = float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else None
    return {**row, "algo": data.get("algo") if isinstance(data.get("algo"), str) else None,
            "env": ", ".join(envs) or None, "status": experiment_status(exp_dir, data, now, statuses),
            "start_time": created, "age_s": round(now - created, 1) if created else None,
            "runs_done": sum(s == "finished" for s in statuses.values()), "runs_total": len(statuses)}


def listing_rows(runs_dir: Path, now: float, all_runs: bool = False) -> list[dict]:
    """Runs and experiments directly under `runs_dir`, oldest first; with `all_runs`, each
    experiment's runs right after it."""
    runs = list_runs(runs_dir, now, experiments=all_runs)
    rows = [run_row(r, now) for r in runs if r.experiment is None]
    rows += [experiment_row(exp_dir, now) for exp_dir in list_experiments(runs_dir)]
    rows.sort(key=lambda row: (row["start_time"] or 0.0, row["name"]))
    if not all_runs:
        return rows
    inside: dict[str, list[dict]] = {}
    for r in runs:
        if r.experiment is not None:
            inside.setdefault(r.experiment, []).append(run_row(r, now))
    return [out for row in rows
            for out in [row, *(inside.get(row["name"], []) if row["kind"] == "experiment" else [])]]


def experiment_listing(exp_dirs: list[Path], now: float) -> list[dict]:
    """Each experiment's line followed by its runs."""
    rows = []
    for exp_dir in exp_dirs:
        rows.append(experiment_row(exp_dir, now))
        for r in list_runs(exp_dir, now):
            r.experiment = exp_dir.name
            rows.append(run_row(r, now))
    return rows


def print_listing(rows: list[dict], runs_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    if not rows:
        console.print(f"No runs in {runs_dir}. Start one: spintui train sac --env Pendulum-v1", markup=False)
        return
    table = Table(title=escape(f"runs in {runs_dir}"), title_justify="left")
    for col in ("name", "kind", "algo", "env", "status", "steps", "last return", "age"):
        table.add_column(col, justify="right" if col in ("steps", "last return", "age") else "left")
    for row in rows:
        if row["kind"] == "experiment":
            steps = "" if row["runs_total"] is None else f"{row['runs_done']}/{row['runs_total']} runs"
        else:
            steps = "" if row["steps"] is None else f"{row['steps']:,}"
            if row["steps"] is not None and row["total_steps"]:
                steps += f"/{row['total_steps']:,}"
        ret = "" if row["last_return"] is None else f"{row['last_return']:.1f}"
        status = escape(row["status"] + (f" ({row['reason']})" if row["reason"] else ""))
        age = "" if row["age_s"] is None else format_age(row["age_s"])
        name = escape(row["name"])
        table.add_row(f"[bold]{name}[/]" if row["kind"] == "experiment" else name,
                      *(escape(row[k] or "") for k in ("kind", "algo", "env")),
                      f"[{STATUS_COLOURS.get(row['status'], 'white')}]{status}[/]", steps, ret, age)
    console.print(table)
