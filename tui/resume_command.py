"""`spintui train [ALGO] --resume RUN|EXPERIMENT`: continue a stopped, crashed or killed run from its
latest checkpoint, or every unfinished run of an experiment.

Everything is checked before anything is written: the run is readable, not finished and not
running; its checkpoint loads (weights only) and was written for resuming, with its replay buffer
where one was saved; options given beside --resume repeat the checkpoint's settings (one that
contradicts them is refused, naming it). Then the run is handed to a new trainer, which resumes
any run that has a checkpoint (algos/launch.py); an experiment's scheduler is started again and
takes every run that is not finished (algos/scheduler.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from spintui.errors import CommandFailed, RunError, UsageError
from spintui.tui.command_options import (get_current_context, headless_option, options_command, resume_option,
                                         runs_dir_option, runs_dir_or_default)

WITH_RESUME = {"resume", "runs_dir", "headless", "config"}  # train's own options that --resume takes


@dataclass
class ResumeOptions:
    """What `spintui train` takes before (or without) an algorithm."""

    resume: str | None = resume_option()
    runs_dir: Path | None = runs_dir_option()
    headless: bool = headless_option("No dashboard: a progress bar and a line per epoch.")


def train_callback():
    """The `train` group's own options, so that `spintui train --resume RUN` needs no algorithm."""
    def run(given: dict) -> None:
        ctx = get_current_context()
        if ctx.invoked_subcommand is not None:
            if any(ctx.get_parameter_source(key).name == "COMMANDLINE" for key in given):
                raise UsageError("options go after the algorithm: spintui train ALGO --resume RUN, or "
                                 "spintui train --resume RUN without one")
            return
        if given.get("resume") is None:
            raise UsageError("missing algorithm: spintui train ALGO --env ID, or spintui train --resume RUN")
        from spintui.tui.train_command import resume

        resume(None, given)

    return options_command(run, ResumeOptions, doc="Train an agent: spintui train ALGO --env ID; continue a "
                           "run with spintui train --resume RUN.", name="train")


def resume_target(algo: str | None, opts, values: dict, own_given: set[str]) -> None:
    """Resume the run or experiment `opts.resume` names; `values` are the algorithm options given."""
    from spintui.profiles.experiments import is_experiment
    from spintui.profiles.runs import resolve_run

    for key in sorted(own_given - WITH_RESUME):
        raise UsageError(f"--{key.replace('_', '-')} cannot be combined with --resume: a resumed run keeps "
                         f"its name, directory and settings")
    runs_dir = runs_dir_or_default(opts.runs_dir)
    for candidate in (Path(opts.resume).expanduser(), runs_dir / opts.resume):
        if is_experiment(candidate):
            return resume_experiment(algo, opts, values, candidate)
    return resume_run(algo, opts, values, resolve_run(opts.resume, runs_dir, kind="train"))


# --------------------------------------------------------------------------------------------------
# Checks (nothing is written before they all pass)


def run_algo(manifest: dict, label: str, algo: str | None) -> str:
    from spintui.algos.registry import ALGORITHMS

    found = manifest.get("algo")
    if manifest.get("kind") != "train" or found not in ALGORITHMS:
        raise RunError(f"{label} is not a training run; --resume continues runs made by spintui train")
    if algo is not None and algo != found:
        raise UsageError(f"{label} is a {found} run, not {algo}; resume it with: spintui train --resume {label}")
    return found


def check_unfinished(manifest: dict, label: str) -> str:
    from spintui.profiles.store import effective_status

    status = effective_status(manifest)
    step = int((manifest.get("progress") or {}).get("step") or 0)
    if status == "finished":
        raise RunError(f"{label} finished at step {step:,}; there is nothing to resume")
    if status == "running":
        raise RunError(f"{label} is running (pid {manifest.get('pid')} on {manifest.get('host')}); "
                       f"stop it before resuming it")
    return status


def checked_config(algo: str, stored: dict, values: dict, config_file: Path | None, label: str):
    """The run's config; UsageError naming the first option (given or in the --config file) that
    contradicts it."""
    from spintui.algos.config import make_config
    from spintui.algos.registry import ALGORITHMS
    from spintui.options import flag_name, format_default, option_fields
    from spintui.tui.train_command import config_file_values

    cfg = make_config(algo, stored)
    given = {key.replace("-", "_"): value for key, value in
             {**config_file_values(algo, config_file), **values}.items()}
    wanted = make_config(algo, {**stored, **given})  # a bad or unknown option is refused here, as for train
    for field in option_fields(ALGORITHMS[algo].config):
        if field.name in given and getattr(wanted, field.name) != getattr(cfg, field.name):
            flag = flag_name(field)
            raise UsageError(f"{flag} {format_default(getattr(wanted, field.name))} contradicts {label}'s "
                             f"checkpoint ({flag} {format_default(getattr(cfg, field.name))}); a resumed run "
                             f"keeps its settings: leave {flag} out")
    return cfg


def checkpoint_of(run_dir: Path, label: str) -> dict | None:
    from spintui.algos.resume import ResumeError, resume_checkpoint

    try:
        return resume_checkpoint(run_dir)
    except ResumeError as exc:
        raise RunError(str(exc).replace(f"{run_dir.name}:", f"{label}:", 1)) from None


# --------------------------------------------------------------------------------------------------
# One run


def resume_run(algo: str | None, opts, values: dict, run_dir: Path) -> None:
    from spintui.algos.registry import ALGORITHMS
    from spintui.profiles.processes import start_trainer
    from spintui.profiles.store import RunPaths, read_manifest, reopen_run
    from spintui.tui.train_command import check_runtime

    label = run_dir.name
    manifest = read_manifest(run_dir)
    found = run_algo(manifest, label, algo)
    check_unfinished(manifest, label)
    checkpoint = checkpoint_of(run_dir, label)
    if checkpoint is None:
        raise RunError(f"{label} has no checkpoint to resume from ({RunPaths(run_dir).latest_checkpoint} is "
                       f"missing); checkpoints are written at the end of each epoch")
    cfg = checked_config(found, checkpoint["config"], values, opts.config, label)
    check_runtime(ALGORITHMS[found], cfg)
    reopen_run(run_dir)
    proc = start_trainer(run_dir)
    print(f"resuming {label} from step {checkpoint['step']:,} (epoch {checkpoint['epoch']})", file=sys.stderr)
    if opts.headless or not (sys.stdout.isatty() and sys.stdin.isatty()):
        from spintui.tui.follow import follow_run
        from spintui.tui.train_command import failure_reason

        status = follow_run(run_dir, proc)
        if status == "failed":
            raise CommandFailed(f"resumed training failed: {failure_reason(run_dir)}")
    else:
        from spintui.tui.app import run_dashboard

        run_dashboard([run_dir], owned=proc)


# --------------------------------------------------------------------------------------------------
# An experiment


def resume_experiment(algo: str | None, opts, values: dict, exp_dir: Path) -> None:
    """Start the experiment's scheduler again for every run that is not finished: stopped, crashed and
    failed runs go back to the queue and resume from their checkpoints (none yet: from scratch)."""
    from spintui.algos.registry import ALGORITHMS
    from spintui.profiles.experiments import experiment_run_dirs, read_experiment, scheduler_alive
    from spintui.profiles.processes import start_producer
    from spintui.profiles.store import read_manifest, reopen_run
    from spintui.tui.experiment_command import SCHEDULER_MODULE, follow_experiment
    from spintui.tui.train_command import check_runtime

    data = read_experiment(exp_dir)
    if scheduler_alive(data):
        raise RunError(f"experiment {exp_dir.name} is running (scheduler pid {(data.get('scheduler') or {}).get('pid')}"
                       f"); watch it with: spintui watch {exp_dir.name}")
    todo, done, configs = [], 0, {}
    for run_dir in experiment_run_dirs(exp_dir, data):
        label = f"{exp_dir.name}/{run_dir.name}"
        manifest = read_manifest(run_dir)  # a damaged run.json: one line naming it
        found = run_algo(manifest, label, algo)
        try:
            status = check_unfinished(manifest, label)
        except RunError:
            if manifest.get("status") != "finished":
                raise
            done += 1
            continue
        checkpoint = checkpoint_of(run_dir, label)
        cfg = checked_config(found, (checkpoint or manifest)["config"], values, opts.config, label)
        configs[(cfg.env, cfg.device, getattr(cfg, "update", ""), cfg.hidden_sizes)] = (found, cfg)
        todo.append((run_dir, status, checkpoint))
    if not todo:
        raise RunError(f"experiment {exp_dir.name}: all {done} runs finished; there is nothing to resume")
    for found, cfg in configs.values():
        check_runtime(ALGORITHMS[found], cfg)
    for run_dir, status, _ in todo:
        if status != "queued":
            reopen_run(run_dir, status="queued")
    resumed = sum(1 for *_, checkpoint in todo if checkpoint is not None)
    print(f"experiment {exp_dir.name}: resuming {resumed} run(s) from checkpoints, starting "
          f"{len(todo) - resumed} from the beginning; {done} finished", file=sys.stderr)
    scheduler = start_producer(exp_dir, SCHEDULER_MODULE)
    if not opts.headless and sys.stdout.isatty() and sys.stdin.isatty():
        from spintui.tui.app import run_dashboard

        run_dashboard(experiment_run_dirs(exp_dir))
        print(f"the experiment goes on; watch again with: spintui watch {exp_dir.name}", file=sys.stderr)
    elif follow_experiment(exp_dir, scheduler) == "failed":
        raise CommandFailed(f"experiment {exp_dir.name}: some runs failed (see spintui runs {exp_dir.name} --all)")
