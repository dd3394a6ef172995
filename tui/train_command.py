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
from spintui.options import build, option
from spintui.tui.command_options import (check_new_run_name, headless_option, name_option, options_command,
                                         runs_dir_option, runs_dir_or_default)


@dataclass
class TrainOptions:
    """What `train` takes besides the algorithm's hyperparameters."""

    config: Path | None = option(None, "TOML file with the same keys (the command line wins).", metavar="FILE")
    name: str | None = name_option("date_time_algo_env_seed")
    runs_dir: Path | None = runs_dir_option()
    headless: bool = headless_option("No dashboard: a progress bar and a line per epoch.")


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


def resolve_train_config(algo: str, cli_values: dict, config_file: Path | None):
    """Defaults < TOML file < options given on the command line; returns a checked config.

    A TOML file holds the keys at its top level, or in a table named after the algorithm."""
    from spintui.algos.config import make_config

    values: dict = {}
    if config_file is not None:
        data = read_toml(config_file)
        values.update(data[algo] if isinstance(data.get(algo), dict) else data)
    values.update({k: v for k, v in cli_values.items() if v is not None})
    return make_config(algo, values)


def train(algo: str, given: dict) -> None:
    spec = ALGORITHMS[algo]
    own = {f.name for f in fields(TrainOptions)}
    opts = build(TrainOptions, {k: v for k, v in given.items() if k in own})
    cfg = resolve_train_config(algo, {k: v for k, v in given.items() if k not in own}, opts.config)
    runs_dir = runs_dir_or_default(opts.runs_dir)
    check_new_run_name(opts.name, runs_dir)
    check_runtime(spec, cfg)

    from spintui.algos.config import config_to_dict
    from spintui.tui.cli import start_trainer
    from spintui.profiles.store import create_run

    run_dir = create_run(runs_dir, kind="train", name=opts.name, algo=algo, env=cfg.env, seed=cfg.seed,
                         config=config_to_dict(cfg), argv=["spintui", *sys.argv[1:]])
    proc = start_trainer(run_dir)
    if not opts.headless and sys.stdout.isatty() and sys.stdin.isatty():
        from spintui.tui.app import run_dashboard

        run_dashboard([run_dir], owned=proc)
        return
    from spintui.tui.follow import follow_run

    if follow_run(run_dir, proc) == "failed":
        raise CommandFailed(f"training failed: {failure_reason(run_dir)} (log: {run_dir / 'output.log'})")


def check_runtime(spec: Algorithm, cfg) -> None:
    """What the options alone cannot tell: the environment exists and fits, the device is here, the
    compiled update can run."""
    from spintui.algos.envs import check_env

    check_env(spec.name, cfg.env)
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if getattr(cfg, "update", "auto") == "native":
        from spintui.algos import native
        from spintui.algos.core import resolve_device

        try:
            native.wanted("native", resolve_device(cfg.device), cfg.hidden_sizes)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def failure_reason(run_dir: Path) -> str:
    from spintui.profiles.store import read_manifest

    try:
        error = read_manifest(run_dir).get("error")
    except RunError:
        error = None
    if error:
        return str(error).splitlines()[0]
    try:
        lines = [ln for ln in (run_dir / "output.log").read_text(errors="replace").splitlines() if ln.strip()]
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
