"""The `spintui` command line.

Heavy imports (torch, gymnasium, Textual) happen inside the commands that need them, so that
`spintui --help` and `spintui runs` start fast. Every user mistake ends in one line on stderr and
exit code 2 (usage) or 1 (runtime); `--debug` shows tracebacks instead.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import typing
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

try:  # typer >= 0.26 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_exceptions

from spintui import __version__
from spintui.algos.config import ALGO_CONFIGS, ALGO_SUMMARIES, ConfigError, coerce, field_type
from spintui.profiles.runs import RUNS_DIR_ENV, default_runs_dir
from spintui.profiles.store import RunError


from spintui.errors import CommandFailed as CLIError, SpintuiError, UsageError as UsageProblem  # noqa: E402


app = typer.Typer(
    name="spintui",
    help="Train Spinning Up's RL algorithms, profile block-sparse kernels, and watch runs live.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train an agent: spintui train ALGO --env ID.", no_args_is_help=True)
profile_app = typer.Typer(help="Profile kernels: spintui profile blocksparse.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(profile_app, name="profile")

RunsDirOption = typer.Option(
    None, "--runs-dir", envvar=RUNS_DIR_ENV, help=f"Directory of runs [default: ./runs, or ${RUNS_DIR_ENV}]."
)


def runs_dir_or_default(runs_dir: Optional[Path]) -> Path:
    return runs_dir if runs_dir is not None else default_runs_dir()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"spintui {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """spintui: Spinning Up's RL algorithms and block-sparse kernels, with a live terminal dashboard."""


# --------------------------------------------------------------------------------------------------
# spintui runs


@app.command("runs")
def runs_cmd(
    runs_dir: Optional[Path] = RunsDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List runs with their status (a running run whose trainer is gone shows as crashed; one whose
    run.json cannot be read, as damaged with the reason)."""
    from spintui.profiles.runs import format_age, list_runs

    directory = runs_dir_or_default(runs_dir)
    if runs_dir is not None and not directory.exists():
        raise CLIError(f"runs directory {directory} does not exist")
    runs = list_runs(directory)  # a file instead of a directory is a UsageError
    now = time.time()
    rows = []
    for r in runs:
        m = r.manifest
        progress = m.get("progress") or {}
        rows.append({
            "name": r.name,
            "path": str(r.path),
            "kind": m.get("kind"),
            "algo": m.get("algo") or m.get("benchmark"),
            "env": m.get("env"),
            "status": r.status,
            "reason": r.reason,
            "steps": progress.get("step"),
            "total_steps": progress.get("total_steps"),
            "last_return": progress.get("last_return"),
            "start_time": m.get("start_time"),
            "age_s": round(now - r.start_time, 1) if r.start_time else None,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"No runs in {directory}. Start one: spintui train sac --env Pendulum-v1")
        return
    colours = {"running": "green", "finished": "blue", "failed": "red", "crashed": "red bold", "stopped": "yellow",
               "damaged": "magenta"}
    table = Table(title=f"runs in {directory}", title_justify="left")
    for col in ("name", "kind", "algo", "env", "status", "steps", "last return", "age"):
        table.add_column(col, justify="right" if col in ("steps", "last return", "age") else "left")
    for row in rows:
        steps = "" if row["steps"] is None else f"{row['steps']:,}"
        if row["steps"] is not None and row["total_steps"]:
            steps += f"/{row['total_steps']:,}"
        ret = "" if row["last_return"] is None else f"{row['last_return']:.1f}"
        status = escape(row["status"] + (f" ({row['reason']})" if row["reason"] else ""))
        age = "" if row["age_s"] is None else format_age(row["age_s"])
        table.add_row(*(escape(row[k] or "") for k in ("name", "kind", "algo", "env")),
                      f"[{colours.get(row['status'], 'white')}]{status}[/]", steps, ret, age)
    console.print(table)


# --------------------------------------------------------------------------------------------------
# spintui train ALGO


def _option_type(tp: typing.Any) -> typing.Any:
    """The type Typer parses; tuples arrive as comma-separated text and are coerced later."""
    args = typing.get_args(tp)
    if type(None) in args:
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return str
    return tp


def _format_default(value: typing.Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _make_train_command(algo: str):
    cls = ALGO_CONFIGS[algo]
    params = []
    annotations = {}
    for f in fields(cls):
        tp = _option_type(field_type(cls, f))
        help_text = f.metadata.get("help", "")
        if f.name != "env":
            help_text += f" (default: {_format_default(f.default)})"
        option = typer.Option(None, f"--{f.name.replace('_', '-')}", help=help_text, show_default=False)
        annotations[f.name] = Optional[tp]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[tp]))
    extras = {
        "config": (Optional[Path], typer.Option(None, "--config", help="TOML file with the same keys (CLI wins).")),
        "name": (Optional[str], typer.Option(None, "--name", help="Run name [default: date_time_algo_env_seed].")),
        "runs_dir": (Optional[Path], RunsDirOption),
        "headless": (bool, typer.Option(False, "--headless", help="No dashboard: a progress bar and a line per epoch.")),
    }
    for pname, (tp, option) in extras.items():
        annotations[pname] = tp
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=tp))

    def command(**kwargs):
        _train(algo, kwargs)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = annotations
    command.__name__ = f"train_{algo}"
    command.__doc__ = f"{ALGO_SUMMARIES[algo]} Defaults follow Spinning Up."
    return command


for _algo in ALGO_CONFIGS:
    train_app.command(_algo)(_make_train_command(_algo))


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageProblem(f"config file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read config file {path}: {exc}") from None
    return data


def resolve_train_config(algo: str, cli_values: dict, config_file: Optional[Path]):
    """Defaults < TOML file < explicit CLI options; returns a validated config."""
    from spintui.algos.config import make_config

    values: dict = {}
    if config_file is not None:
        data = _read_toml(config_file)
        values.update(data.get(algo, data) if isinstance(data.get(algo), dict) else data)
    values.update({k: v for k, v in cli_values.items() if v is not None})
    cls = ALGO_CONFIGS[algo]
    for key in list(values):
        name = key.replace("-", "_")
        if name in {f.name for f in fields(cls)}:
            values[key] = coerce(cls, name, values[key])
    return make_config(algo, values)


def _train(algo: str, kwargs: dict) -> None:
    from spintui.algos.config import config_to_dict
    from spintui.algos.envs import check_env
    from spintui.profiles.store import create_run

    config_file = kwargs.pop("config")
    name = kwargs.pop("name")
    runs_dir = runs_dir_or_default(kwargs.pop("runs_dir"))
    headless = kwargs.pop("headless")
    cfg = resolve_train_config(algo, kwargs, config_file)
    check_env(algo, cfg.env)
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageProblem("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if getattr(cfg, "update", "auto") == "native":  # off-policy only; refuse before a run directory exists
        from spintui.algos import native
        from spintui.algos.core import resolve_device

        try:
            native.wanted("native", resolve_device(cfg.device), cfg.hidden_sizes)
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None
    if name is not None:
        if "/" in name or name in ("", ".", "..", "latest") or (runs_dir / name).exists():
            raise UsageProblem(f"run name {name!r} is taken or invalid in {runs_dir}; pick another --name")
    run_dir = create_run(runs_dir, kind="train", name=name, algo=algo, env=cfg.env, seed=cfg.seed,
                         config=config_to_dict(cfg), argv=["spintui", *sys.argv[1:]])
    proc = start_trainer(run_dir)
    interactive = not headless and sys.stdout.isatty() and sys.stdin.isatty()
    if interactive:
        try:
            from spintui.tui.app import run_dashboard  # noqa: F401
        except ImportError:
            interactive = False
    if interactive:
        from spintui.tui.app import run_dashboard

        run_dashboard([run_dir], owned=proc)
        return
    from spintui.tui.follow import follow_run

    status = follow_run(run_dir, proc)
    if status == "failed":
        raise CLIError(f"training failed: {_failure_reason(run_dir)} (log: {run_dir / 'output.log'})")


def start_producer(run_dir: Path, module: str):
    """Start `python -m module RUN_DIR` as its own process in its own session, logging to output.log,
    so the producer survives this terminal and never shares a process with a viewer."""
    import subprocess

    log = open(run_dir / "output.log", "ab")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", module, str(run_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    finally:
        log.close()


def start_trainer(run_dir: Path):
    """Start the trainer for a prepared run directory."""
    return start_producer(run_dir, "spintui.algos.launch")


def _failure_reason(run_dir: Path) -> str:
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


# --------------------------------------------------------------------------------------------------
# spintui watch / eval / profile


@app.command("watch")
def watch_cmd(
    runs: Optional[list[str]] = typer.Argument(None, help="Run paths, names, globs or 'latest' [default: latest]."),
    runs_dir: Optional[Path] = RunsDirOption,
) -> None:
    """Open the live dashboard on one or more runs, live or finished."""
    from spintui.profiles.runs import resolve_watch_runs

    directory = runs_dir_or_default(runs_dir)
    run_dirs = resolve_watch_runs(runs or ["latest"], directory,
                                  warn=lambda message: print(f"spintui: warning: {message}", file=sys.stderr))
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        if len(run_dirs) > 1:
            raise UsageProblem("watching several runs needs a terminal; give one run to follow it headless")
        from spintui.tui.follow import follow_run

        follow_run(run_dirs[0], stop_on_interrupt=False)  # a viewer never stops someone's training
        return
    from spintui.tui.data import Preload

    preload = Preload(run_dirs)  # reads the runs while Textual is imported
    from spintui.tui.app import run_dashboard

    run_dashboard(run_dirs, preload=preload)


@app.command("eval")
def eval_cmd(
    run: str = typer.Argument("latest", help="Run path, name or 'latest'."),
    episodes: int = typer.Option(10, "--episodes", min=1, help="Episodes to run."),
    render: bool = typer.Option(False, "--render", help="Render to a window (human mode)."),
    seed: int = typer.Option(10_000, "--seed", help="Seed of the evaluation episodes."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    runs_dir: Optional[Path] = RunsDirOption,
) -> None:
    """Run a trained run's deterministic policy and print mean +- std return."""
    from spintui.profiles.runs import resolve_run

    if device not in ("auto", "cpu", "cuda"):
        raise UsageProblem(f"--device must be auto, cpu or cuda, got {device!r}")
    run_dir = resolve_run(run, runs_dir_or_default(runs_dir), kind="train")
    from spintui.algos.evaluate import EvalError, evaluate

    try:
        result = evaluate(run_dir, episodes=episodes, render=render, seed=seed, device=device)
    except EvalError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:  # e.g. --device cuda without a GPU
        raise UsageProblem(str(exc).splitlines()[0]) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['run']}: {result['algo']} on {result['env']} (checkpoint at step {result['checkpoint_step']:,}): "
               f"return {result['mean_return']:.1f} \u00b1 {result['std_return']:.1f} over {episodes} episodes")


@profile_app.command("blocksparse")
def profile_blocksparse_cmd(
    sizes: Optional[str] = typer.Option(None, "--sizes", help="M,N,K triples or N for square, separated by "
                                        "spaces or ';' (default: GPU 4096 8192; CPU 512 1024)."),
    blocks: Optional[str] = typer.Option(None, "--blocks", help="Block sizes: 16, 32, 64, 128 "
                                         "(default: GPU 32,64,128; CPU 32,64)."),
    densities: Optional[str] = typer.Option(None, "--densities", help="Fractions of blocks stored, e.g. "
                                            "0.5,0.1 or 50%,10% (default: 50%,25%,10%,5%)."),
    dtypes: Optional[str] = typer.Option(None, "--dtypes", help="fp32, fp16, bf16, fp64 (default: GPU bf16; "
                                         "CPU fp32)."),
    modes: Optional[str] = typer.Option(None, "--modes", help="sdd, dsd, dds (default: all three)."),
    layout: str = typer.Option("random", "--layout", help="Block pattern: random, banded or strided."),
    backward: bool = typer.Option(False, "--backward", help="Time forward + backward (autograd) too."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for every peer (default: 1, "
                                          "timed by the thread's CPU time, steady on a shared machine)."),
    seed: int = typer.Option(0, "--seed", help="Seed of layouts and operands."),
    quick: bool = typer.Option(False, "--quick", help="A small grid (under a minute on a 2-core CPU)."),
    headless: bool = typer.Option(False, "--headless", help="No dashboard: a live table (or a line per case)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the profile as JSON "
                                             "(schema_version 1) to this file."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Baseline profile run (path, name or "
                                          "'latest'): mark cases faster/slower; headless exits 1 on regressions."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Noise threshold of --compare as a "
                                              "fraction, 0.5 = 50% (default: 1.25, measured on a shared 2-core CPU; see kernel_sweep.NOISE_THRESHOLD)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: date_time_blocksparse)."),
    runs_dir: Optional[Path] = RunsDirOption,
) -> None:
    """Time block-sparse matmul kernels against dense and torch's BSR (each case checked first)."""
    from spintui.profiles import kernel_sweep
    from spintui.profiles.runs import resolve_run
    from spintui.profiles.store import create_run

    directory = runs_dir_or_default(runs_dir)
    baseline = None
    if compare is not None:  # before this run exists, so that 'latest' means the previous profile
        try:
            baseline = resolve_run(compare, directory, kind="profile")
        except RunError as exc:
            raise UsageProblem(f"--compare: {exc}") from None
        kernel_sweep.check_profile_run(baseline)
    if name is not None and ("/" in name or name in ("", ".", "..", "latest") or (directory / name).exists()):
        raise UsageProblem(f"run name {name!r} is taken or invalid in {directory}; pick another --name")
    if json_path is not None:
        json_path = json_path.expanduser().resolve()
        if json_path.is_dir() or not json_path.parent.is_dir():
            raise UsageProblem(f"--json: cannot write {json_path} (not a file in an existing directory)")
    cfg = kernel_sweep.resolve_config(
        sizes=sizes, blocks=blocks, densities=densities, dtypes=dtypes, modes=modes, layout=layout,
        backward=backward, device=device, threads=threads, seed=seed, quick=quick,
        json_path=None if json_path is None else str(json_path),
        compare=None if baseline is None else str(baseline.resolve()), threshold=threshold)
    run_dir = create_run(directory, kind="profile", name=name, benchmark=kernel_sweep.BENCHMARK, seed=seed,
                         config=cfg.to_dict(), argv=["spintui", *sys.argv[1:]])
    interactive = not headless and sys.stdout.isatty() and sys.stdin.isatty()
    if interactive:
        try:
            from spintui.tui.app import run_dashboard
        except ImportError:
            interactive = False
    if interactive:
        proc = start_sweep(run_dir)
        run_dashboard([run_dir], owned=proc)
        return
    from spintui.tui.profile_report import report_sweep

    result = report_sweep(run_dir)
    if result.status == "failed":
        raise CLIError(f"profile failed: {_failure_reason(run_dir)}")
    if result.wrong or result.errors or result.regressions:
        problems = [f"{n} {what}" for n, what in ((result.wrong, "WRONG"), (result.errors, "failed"),
                                                  (result.regressions, "regressions")) if n]
        print(f"spintui: profile {run_dir.name}: {', '.join(problems)}", file=sys.stderr)
        raise typer.Exit(1)


def start_sweep(run_dir: Path):
    """Start a profile sweep for a prepared run directory."""
    return start_producer(run_dir, "spintui.profiles.kernel_sweep")


# --------------------------------------------------------------------------------------------------
# entry point


def _usage_message(exc: click_exceptions.UsageError) -> str:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(message.split())
    ctx = exc.ctx
    if ctx is not None and hasattr(ctx.command, "list_commands") and "No such command" in message:
        names = ctx.command.list_commands(ctx)
        message = message.rstrip(".") + f"; commands: {', '.join(names)}"
    elif ctx is not None and isinstance(exc, click_exceptions.NoSuchOption):
        opts = sorted({o for p in ctx.command.params for o in p.opts if o.startswith("--")})
        message = message.rstrip(".") + f"; see `{ctx.command_path} --help` for the {len(opts)} options"
    elif "Missing command" in message and ctx is not None and hasattr(ctx.command, "list_commands"):
        message = f"missing command; commands: {', '.join(ctx.command.list_commands(ctx))}"
    prefix = ctx.command_path if ctx is not None else "spintui"
    return f"{prefix}: error: {message}"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("SPINTUI_DEBUG"))
    try:
        code = app(args=argv, prog_name="spintui", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            print(exc.ctx.get_help())
            sys.exit(0 if exc.ctx.parent is None else 2)
        if debug:
            raise
        print(_usage_message(exc), file=sys.stderr)
        sys.exit(2)
    except SpintuiError as exc:
        if debug:
            raise
        print(f"spintui: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("spintui: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"spintui: error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
