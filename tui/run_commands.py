"""`spintui runs`, `spintui watch` and `spintui eval`: the commands that read existing runs."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spintui.errors import CommandFailed, RunError, UsageError
from spintui.options import SEED, Range, build, option
from spintui.tui.command_options import options_command, runs_dir_option, runs_dir_or_default


@dataclass
class RunsOptions:
    experiments: list[str] = option([], "Only these experiments (names or paths), each with its runs.",
                                    argument=True, metavar="[EXPERIMENT]...")
    runs_dir: Path | None = runs_dir_option()
    json: bool = option(False, "Print JSON instead of a table.")
    all: bool = option(False, "Also list the runs inside experiments (named EXPERIMENT/RUN).")


@dataclass
class WatchOptions:
    runs: list[str] = option(["latest"], "Runs or experiments: paths, names (EXPERIMENT/RUN for a run in one), "
                             "globs or 'latest'; TensorBoard log directories and Spinning Up output "
                             "directories by path.", argument=True, metavar="RUN...")
    runs_dir: Path | None = runs_dir_option()


@dataclass
class EvalOptions:
    run: str = option("latest", "Run path, name or 'latest'.", argument=True, metavar="RUN")
    episodes: int = option(10, "Episodes to run.", range=Range(1, 100_000))
    render: bool = option(False, "Render to a window (human mode; needs a display).")
    video: Path | None = option(None, "Record an MP4 of each episode into DIR (no display needed; the video "
                                "extra).", metavar="DIR")
    seed: int = option(10_000, "Seed of the evaluation episodes.", range=SEED)
    env_kwargs: dict[str, Any] = option({}, "Environment keyword arguments over the run's own, e.g. g=12.0 "
                                        "(values are numbers, true/false or text).", metavar="KEY=VALUE,...",
                                        default_text="the run's")
    device: Literal["auto", "cpu", "cuda"] = option("cpu", "Where the policy runs.")
    json: bool = option(False, "Print JSON.")
    runs_dir: Path | None = runs_dir_option()


def existing_runs_dir(runs_dir: Path | None) -> Path:
    """The runs directory to read; an explicit one must exist and be a directory."""
    directory = runs_dir_or_default(runs_dir)
    if runs_dir is not None:
        if not directory.exists():
            raise RunError(f"runs directory {directory} does not exist")
        if not directory.is_dir():
            raise UsageError(f"--runs-dir {directory} is not a directory")
    return directory


def runs(given: dict) -> None:
    """List runs and experiments with their status (a running run whose trainer is gone shows as
    crashed; one whose run.json cannot be read, as damaged with the reason). An experiment is one
    line; --all lists its runs too, as does naming it."""
    from spintui.profiles.runs import resolve_experiment
    from spintui.tui.run_listing import experiment_listing, listing_rows, print_listing

    opts = build(RunsOptions, given)
    directory = existing_runs_dir(opts.runs_dir)
    if opts.experiments:
        exp_dirs = list(dict.fromkeys(resolve_experiment(spec, directory) for spec in opts.experiments))
        rows = experiment_listing(exp_dirs, time.time())
    else:
        rows = listing_rows(directory, time.time(), all_runs=opts.all)
    if opts.json:
        print(json.dumps(rows, indent=2))
        return
    print_listing(rows, directory)


def watch(given: dict) -> None:
    """Open the live dashboard on runs, live or finished; an experiment, or several training runs,
    show grouped by configuration (mean and spread of the seeds). TensorBoard log directories and
    Spinning Up output directories are read like runs (read-only, as they grow). Without a terminal:
    one run is followed line by line, several runs or an experiment print their group table when it
    changes."""
    from spintui.profiles.experiments import common_experiment
    from spintui.profiles.foreign_logs import check_readable
    from spintui.profiles.runs import resolve_watch
    from spintui.tui.run_groups import grouped

    opts = build(WatchOptions, given)
    directory = runs_dir_or_default(opts.runs_dir)
    target = resolve_watch(opts.runs, directory,
                           warn=lambda message: print(f"spintui: warning: {message}", file=sys.stderr))
    run_dirs = target.runs
    check_readable(run_dirs)
    experiment = common_experiment(run_dirs) if target.experiments or len(run_dirs) > 1 else None
    several = grouped(run_dirs, experiment)
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        if several:
            from spintui.tui.experiment_follow import follow_groups

            follow_groups(run_dirs, experiment)
            return
        if len(run_dirs) > 1:
            raise UsageError("watching several profile runs needs a terminal; give one run to follow it headless")
        from spintui.profiles.foreign_logs import is_foreign

        if is_foreign(run_dirs[0]):
            from spintui.tui.foreign_follow import follow_foreign

            follow_foreign(run_dirs[0])
            return
        from spintui.tui.follow import follow_run

        follow_run(run_dirs[0], stop_on_interrupt=False)  # a viewer never stops someone's training
        return
    from spintui.tui.data import Preload
    from spintui.tui.plot_data import ViewSettings

    # Reads (and smooths) the runs while Textual is imported.
    preload = Preload(run_dirs, scalars=not several, smoothing=ViewSettings().smoothing)
    from spintui.tui.app import run_dashboard

    run_dashboard(run_dirs, preload=preload, experiment=experiment)


def evaluate(given: dict) -> None:
    """Run a trained run's deterministic policy and print mean +- std return."""
    from spintui.profiles.runs import resolve_run

    opts = build(EvalOptions, given)
    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    check_eval_output(opts)
    run_dir = resolve_run(opts.run, runs_dir_or_default(opts.runs_dir), kind="train")
    from spintui.algos.evaluate import evaluate as play

    try:
        result = play(run_dir, episodes=opts.episodes, render=opts.render, seed=opts.seed, device=opts.device,
                      video=opts.video, env_kwargs=opts.env_kwargs)
    except CommandFailed:
        raise
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['run']}: {result['algo']} on {result['env']} (checkpoint at step {result['checkpoint_step']:,}): "
          f"return {result['mean_return']:.1f} \u00b1 {result['std_return']:.1f} over {opts.episodes} episodes")
    if opts.video is not None:
        print(f"{len(result['videos'])} videos in {opts.video}")


def check_eval_output(opts: EvalOptions) -> None:
    """--render needs a display; --video needs moviepy and a directory (not a file)."""
    import os

    if opts.render and opts.video is not None:
        raise UsageError("--render shows a window and --video records files: give one of them")
    if opts.render and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("--render needs a display and there is none ($DISPLAY and $WAYLAND_DISPLAY are unset); "
                         "record MP4s instead with --video DIR")
    if opts.video is not None:
        if opts.video.exists() and not opts.video.is_dir():
            raise UsageError(f"--video {opts.video} is a file, not a directory")
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise UsageError("--video needs moviepy: pip install 'spintui[video]'") from None


COMMANDS = {
    "runs": options_command(runs, RunsOptions, doc=runs.__doc__, name="runs"),
    "watch": options_command(watch, WatchOptions, doc=watch.__doc__, name="watch"),
    "eval": options_command(evaluate, EvalOptions, doc=evaluate.__doc__, name="eval"),
}
