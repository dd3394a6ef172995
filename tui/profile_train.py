"""`spintui profile train ALGO`: a short training run with tracing on, shown as a kernel table.

Every `train` option applies (`--update torch`, `--device cuda`, ...). Without `--steps` the run is
just long enough for four update blocks (off-policy) or two epochs (on-policy); without `--trace`
it captures blocks 2 to 4 (the first pays one-off costs), or what there is. The run is a profile
run (kind profile, benchmark train) trained by the usual trainer process; its table is the latest
`trace` record (profiles/trace_table.py), in the profile dashboard or, headless, printed with Rich.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from spintui.errors import CommandFailed, ConfigError
from spintui.options import build, option
from spintui.tui.command_options import (check_new_run_name, compare_baseline, headless_option, json_output_path,
                                         name_option, runs_dir_option, runs_dir_or_default, threshold_option)

BENCHMARK = "train"


@dataclass
class ProfileTrainOptions:
    headless: bool = headless_option("No dashboard: follow the training, then print the kernel table.")
    json: Path | None = option(None, "Also write the kernel table as profile JSON (schema_version 1) to this "
                               "file.", metavar="FILE")
    compare: str | None = option(None, "Baseline training profile (path, name or 'latest'): mark operations "
                                 "faster or slower per call; headless exits 1 when one got slower.", metavar="RUN")
    threshold: float | None = threshold_option("1.25, as profile blocksparse")
    name: str | None = name_option("date_time_algo_env_seed")
    runs_dir: Path | None = runs_dir_option()


def default_values(algo: str, values: dict) -> dict:
    """`values` with --steps and --trace filled in where not given: a few update blocks, traced."""
    from spintui.algos.config import make_config

    values = dict(values)
    untraced = {k: v for k, v in values.items() if k != "trace"}
    if values.get("steps") is None:
        probe = make_config(algo, untraced)
        if hasattr(probe, "update_every"):
            values["steps"] = probe.update_after + 4 * probe.update_every
        else:
            values["steps"] = 2 * probe.steps_per_epoch
        untraced["steps"] = values["steps"]
    if values.get("trace") is None:
        blocks = make_config(algo, untraced).update_blocks()
        if blocks == 0:
            raise ConfigError("--steps: this run does no update block to trace; raise --steps or lower "
                              "--update-after")
        first, last = min(2, blocks), min(4, blocks)
        values["trace"] = str(first) if first == last else f"{first}:{last}"
    return values


def profile_train(algo: str, given: dict) -> None:
    """Train briefly with --trace on and show which operations the update spends its time in."""
    from spintui.algos.config import config_to_dict, make_config
    from spintui.algos.registry import ALGORITHMS
    from spintui.profiles.store import create_run
    from spintui.profiles.sweep_config import NOISE_THRESHOLD
    from spintui.tui.train_command import check_runtime

    own = {f.name for f in fields(ProfileTrainOptions)}
    opts = build(ProfileTrainOptions, {k: v for k, v in given.items() if k in own})
    spec = ALGORITHMS[algo]
    cfg = make_config(algo, default_values(algo, {k: v for k, v in given.items() if k not in own}))
    directory = runs_dir_or_default(opts.runs_dir)
    baseline = compare_baseline(opts.compare, directory, BENCHMARK, "a training profile (spintui profile train)")
    check_new_run_name(opts.name, directory)
    json_path = json_output_path(opts.json)
    check_runtime(spec, cfg)
    threshold = opts.threshold if opts.threshold is not None else NOISE_THRESHOLD
    compare = None if baseline is None else {"baseline": str(baseline.resolve()), "threshold": threshold}
    run_dir = create_run(directory, kind="profile", name=opts.name, algo=algo, benchmark=BENCHMARK, env=cfg.env,
                         seed=cfg.seed, config=config_to_dict(cfg), argv=["spintui", *sys.argv[1:]],
                         extra={"profile": {"compare": compare}})
    from spintui.profiles.processes import start_trainer

    proc = start_trainer(run_dir)
    if not opts.headless and sys.stdout.isatty() and sys.stdin.isatty():
        from spintui.tui.app import run_dashboard

        run_dashboard([run_dir], owned=proc)
        result = profile_result(run_dir)
    else:
        from spintui.tui.follow import follow_run
        from spintui.tui.train_command import failure_reason

        if follow_run(run_dir, proc) == "failed":
            raise CommandFailed(f"profile failed: {failure_reason(run_dir)}")
        result = profile_result(run_dir)
        print_result(run_dir, result)
    if json_path is not None:
        from spintui.profiles.store import write_json_atomic

        write_json_atomic(json_path, result)
    if result["compare"] and result["compare"]["regressions"] and opts.headless:
        raise CommandFailed(f"profile {run_dir.name}: {result['compare']['regressions']} operations slower")


@lru_cache(maxsize=8)
def baseline_rows(path: str) -> tuple:
    """A finished baseline's latest trace rows (read once per viewer)."""
    from spintui.profiles.trace_table import run_trace

    return tuple((run_trace(path) or {}).get("rows") or [])


def compared(rows: list[dict], manifest: dict) -> dict | None:
    """Verdicts of `rows` against the run's --compare baseline, or None without one."""
    from spintui.profiles.trace_table import compare_rows

    spec = (manifest.get("profile") or {}).get("compare")
    if not spec:
        return None
    out = compare_rows(rows, list(baseline_rows(spec["baseline"])), spec["threshold"])
    out["baseline"], out["baseline_path"] = Path(spec["baseline"]).name, spec["baseline"]
    return out


def profile_result(run_dir: Path) -> dict:
    """The run's kernel table as profile JSON, compared with its baseline when it has one."""
    from spintui.profiles.store import read_manifest
    from spintui.profiles.trace_table import profile_json, run_trace

    rows = list((run_trace(run_dir) or {}).get("rows") or [])
    return profile_json(run_dir, compared(rows, read_manifest(run_dir)))


def print_result(run_dir: Path, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from spintui.tui import profile_data as pd

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    rows, trace = result["cases"], result["trace"]
    if not rows:
        console.print(f"[red]{run_dir.name}: no trace was logged[/]")
        return
    blocks = trace.get("blocks") or []
    title = (f"{run_dir.name}: update blocks {'-'.join(map(str, blocks))}, {trace.get('update_s', 0) * 1e3:.1f} ms "
             f"on {trace.get('device')}, {trace.get('update')}; trace {trace.get('file')}")
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    cols = pd.trace_columns(rows)
    for _, label, right in cols:
        table.add_column(label, justify="right" if right else "left", no_wrap=True)
    for i, rec in enumerate(rows, start=1):
        table.add_row(*(Text(pd.trace_cell(rec, key, i), style=pd.trace_cell_style(rec, key)) for key, _, _ in cols))
    console.print(table)
    if result["compare"]:
        c = result["compare"]
        shown = ", ".join(f"{n} {verdict}" for verdict, n in c["counts"].items() if n)
        console.print(f"[{'red' if c['regressions'] else 'green'}]vs {c['baseline']} (threshold "
                      f"{c['threshold']:.0%}): {shown or 'no operations'}[/]")


def profile_train_commands() -> dict[str, object]:
    """`spintui profile train ALGO`, one command per algorithm with every train option."""
    from spintui.algos.registry import ALGORITHMS
    from spintui.tui.command_options import options_command

    return {
        spec.name: options_command(lambda given, algo=spec.name: profile_train(algo, given), spec.config,
                                   ProfileTrainOptions, doc=f"Profile {spec.name}'s update: a short training run "
                                   f"with --trace, as a kernel table.", name=f"profile_train_{spec.name}")
        for spec in ALGORITHMS.values()
    }
