"""The `spintui` command line.

Heavy imports (torch, gymnasium, Textual) happen inside the commands that need them, so that
`spintui --help` and `spintui runs` start fast. Every user mistake ends in one line on stderr and
exit code 2 (usage) or 1 (runtime); `--debug` shows tracebacks instead.
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer >= 0.26 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_exceptions

from spintui import __version__
from spintui.errors import SpintuiError


app = typer.Typer(
    name="spintui",
    help="Train Spinning Up's RL algorithms, profile block-sparse kernels, and watch runs live.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train an agent: spintui train ALGO --env ID.", no_args_is_help=True)
profile_app = typer.Typer(help="Profile kernels: spintui profile blocksparse, spintui profile train ALGO.",
                          no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(profile_app, name="profile")

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
# commands: each module declares its options as a dataclass (spintui.options)

from spintui.tui import (export_command, plot_command, profile_command, profile_train, resume_command,  # noqa: E402
                         run_commands, train_command)

for _name, _command in {**run_commands.COMMANDS, **export_command.COMMANDS, **plot_command.COMMANDS}.items():
    app.command(_name)(_command)
# `spintui train --resume RUN` needs no algorithm: the group's own options, run when no command follows
train_app.callback(invoke_without_command=True)(resume_command.train_callback())
for _name, _command in train_command.train_commands().items():
    train_app.command(_name)(_command)
for _name, _command in profile_command.COMMANDS.items():
    profile_app.command(_name)(_command)
profile_train_app = typer.Typer(help="Profile an algorithm's update: spintui profile train ALGO --env ID.",
                                no_args_is_help=True)
profile_app.add_typer(profile_train_app, name="train")
for _name, _command in profile_train.profile_train_commands().items():
    profile_train_app.command(_name)(_command)


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
    elif isinstance(exc, click_exceptions.BadParameter) and getattr(exc.param, "type", None) is not None \
            and hasattr(exc.param.type, "choices") and " is not one of " in message:
        # the same words as spintui.options uses for every other bad value
        given = message.split(": ", 1)[-1].split(" is not one of ")[0]
        choices = ", ".join(str(c) for c in exc.param.type.choices)
        message = f"{exc.param.opts[0]} must be one of {choices}, got {given}"
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
