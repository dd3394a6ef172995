"""`spintui train ALGO`: check every option, create the run, start the trainer, then watch it.

The trainer is its own process (profiles/processes.py), so closing the dashboard or the terminal
never ends training unless the user asks for a stop. Nothing is created before every option, the
environment, the device and the run name have been checked.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path

from spintui.algos.registry import ALGORITHMS, Algorithm
from spintui.errors import CommandFailed, RunError, UsageError
from spintui.options import AT_LEAST_1, Range, build, option
from spintui.tui.command_options import (check_new_run_name, headless_option, name_option, options_command,
                                         resume_option, runs_dir_option, runs_dir_or_default)


@dataclass
class TrainOptions:
    """What `train` takes besides the algorithm's hyperparameters; none of these can vary in a grid."""

    config: Path | None = option(None, "TOML file with the same keys (the command line wins).", metavar="FILE")
    grid: Path | None = option(None, "TOML file of lists of values (gamma = [0.98, 0.99]): every combination "
                               "is a run of one experiment.", metavar="FILE")
    name: str | None = name_option("date_time_algo_env_seed")
    runs_dir: Path | None = runs_dir_option()
    headless: bool = headless_option("No dashboard: a progress bar and a line per epoch.")
    parallel: int | None = option(None, "Runs of an experiment at a time on this machine.", range=Range(1, 1024),
                                  default_text="CPU cores / threads per run")
    ray: str | None = option(None, "Run an experiment's runs on a Ray cluster: auto or its ADDRESS (host:port).",
                             metavar="auto|ADDRESS")
    max_runs: int = option(1000, "Refuse a grid of more runs than this.", range=AT_LEAST_1)
    resume: str | None = resume_option()


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config: file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config: cannot read {path}: {' '.join(str(exc).split())}") from None


def config_file_values(algo: str, config_file: Path | None) -> dict:
    """A TOML file's keys, at its top level or in a table named after the algorithm."""
    if config_file is None:
        return {}
    data = read_toml(config_file)
    return dict(data[algo] if isinstance(data.get(algo), dict) else data)


def resolve_train_config(algo: str, cli_values: dict, config_file: Path | None):
    """Defaults < TOML file < options given on the command line; returns a checked config."""
    from spintui.algos.config import make_config

    values = config_file_values(algo, config_file)
    values.update({k: v for k, v in cli_values.items() if v is not None})
    return make_config(algo, values)


def train(algo: str, given: dict) -> None:
    """Check everything, then start one run, or an experiment when an option has several values."""
    if given.get("resume") is not None:
        return resume(algo, given)
    from spintui.algos.config import make_config
    from spintui.algos.grid import expand

    spec = ALGORITHMS[algo]
    own = {f.name for f in fields(TrainOptions)}
    for key in own:  # TrainOptions describe the whole command: none of them varies in a grid
        if isinstance(given.get(key), str) and "," in given[key]:
            raise UsageError(f"--{key.replace('_', '-')} takes one value, got {given[key]!r}; it cannot vary "
                             f"in a grid")
    opts = build(TrainOptions, {k: v for k, v in given.items() if k in own})
    base = config_file_values(algo, opts.config)
    grid = read_toml(opts.grid) if opts.grid is not None else None
    varying, points = expand(spec.config, {k: v for k, v in given.items() if k not in own}, grid, opts.max_runs)
    configs = [make_config(algo, {**base, **point.settings}) for point in points]
    runs_dir = runs_dir_or_default(opts.runs_dir)
    check_new_run_name(opts.name, runs_dir)
    for cfg in {(c.env, c.device, getattr(c, "update", ""), c.hidden_sizes): c for c in configs}.values():
        check_runtime(spec, cfg)
    if varying or opts.ray is not None:
        from spintui.tui.experiment_command import start_experiment

        start_experiment(spec, opts, runs_dir, varying, grid or {}, points, configs)
    elif opts.parallel is not None:
        raise UsageError("--parallel applies to experiments: give an option several values, e.g. --seed 0,1,2")
    else:
        start_single_run(spec, opts, runs_dir, configs[0])


def resume(algo: str | None, given: dict) -> None:
    """`spintui train [ALGO] --resume RUN|EXPERIMENT` (tui/resume_command.py): the run keeps its own
    settings, so options beside --resume may only repeat them."""
    from spintui.tui.resume_command import resume_target

    own = {f.name for f in fields(TrainOptions)}
    opts = build(TrainOptions, {k: v for k, v in given.items() if k in own})
    resume_target(algo, opts, {k: v for k, v in given.items() if k not in own}, {k for k in given if k in own})


def start_single_run(spec: Algorithm, opts: TrainOptions, runs_dir: Path, cfg) -> None:
    from spintui.algos.config import config_to_dict
    from spintui.profiles.processes import start_trainer
    from spintui.profiles.store import RunPaths, create_run

    run_dir = create_run(runs_dir, kind="train", name=opts.name, algo=spec.name, env=cfg.env, seed=cfg.seed,
                         config=config_to_dict(cfg), argv=["spintui", *sys.argv[1:]])
    proc = start_trainer(run_dir)
    if not opts.headless and sys.stdout.isatty() and sys.stdin.isatty():
        from spintui.tui.app import run_dashboard

        run_dashboard([run_dir], owned=proc)
        return
    from spintui.tui.follow import follow_run

    if follow_run(run_dir, proc) == "failed":
        raise CommandFailed(f"training failed: {failure_reason(run_dir)} (log: {RunPaths(run_dir).output_log})")


def check_runtime(spec: Algorithm, cfg) -> None:
    """What the options alone cannot tell: the environment exists and fits, the device is here, the
    compiled update can run."""
    from spintui.algos.envs import check_env

    check_env(spec.name, cfg.env, cfg.env_kwargs)
    if cfg.tensorboard is not None:
        from spintui.profiles.tensorboard_events import require_tensorboard

        require_tensorboard("--tensorboard", cfg.tensorboard)
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if getattr(cfg, "update", "auto") in ("native", "compile"):
        from spintui.algos import offpolicy_paths
        from spintui.algos.core import resolve_device

        try:
            offpolicy_paths.choose(cfg.update, resolve_device(cfg.device), cfg.hidden_sizes, cfg.block_sparse)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def failure_reason(run_dir: Path) -> str:
    from spintui.profiles.store import RunPaths, read_manifest

    try:
        error = read_manifest(run_dir).get("error")
    except RunError:
        error = None
    if error:
        return str(error).splitlines()[0]
    try:
        lines = [ln for ln in RunPaths(run_dir).output_log.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else "the trainer exited without a message"
    except OSError:
        return "the trainer exited without a message"


def train_commands() -> dict[str, object]:
    """One Typer command per algorithm, its options generated from the algorithm's config class."""
    return {
        spec.name: options_command(lambda given, algo=spec.name: train(algo, given), spec.config, TrainOptions,
                                   doc=f"{spec.summary} Defaults follow Spinning Up.", name=f"train_{spec.name}")
        for spec in ALGORITHMS.values()
    }
