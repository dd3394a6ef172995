"""Typer commands generated from options dataclasses (spintui.options).

Every command declares its options as dataclass fields; `options_command` turns them into Typer
parameters with one help style (help text kept literally, defaults as "[default: x]", choices
listed), and hands the command only the values the user gave, so `spintui.options.build` applies
the dataclass defaults and checks every value the same way for the command line and TOML.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import typer
from rich.markup import escape

try:  # typer >= 0.26 vendors click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer on real click
    from click import get_current_context

from spintui.errors import RunError, UsageError
from spintui.options import (Range, field_type, flag_name, format_default, item_words, option, option_fields,
                             split_type)

_METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}


def _metavar(cls: type, f: dataclasses.Field) -> str | None:
    if f.metadata.get("metavar"):
        return f.metadata["metavar"]
    base, _, words = split_type(field_type(cls, f.name))
    if item_words(base):
        return f"{'|'.join(item_words(base))},..."
    if typing.get_origin(base) is tuple:
        return "INT,..."
    name = _METAVARS.get(base, "PATH" if base is not None and getattr(base, "__name__", "") == "Path" else None)
    if name and words:
        return f"{name}|{'|'.join(words)}"
    return name


def _parameter(cls: type, f: dataclasses.Field) -> inspect.Parameter:
    """The Typer parameter of one field. Its default is the field's own, written as a user would type
    it, so help shows every default the same way; the command tells given values from defaults by
    where click found them."""
    base, optional, words = split_type(field_type(cls, f.name))
    default = None if f.default is dataclasses.MISSING else f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    text = f.metadata.get("default_text")
    shown: bool | str = text or (default is not None and default is not False and default != "")
    typed_default = None if default is None else (
        default if isinstance(default, (bool, list)) or (base is None and words) else format_default(default))
    rng = f.metadata.get("range")
    help_text = escape(f.metadata.get("help", "") + (f" Range: {rng.describe().removeprefix('in ')}." if rng is not None else ""))
    if base is bool:
        annotation: Any = bool
        param = typer.Option(bool(default), flag_name(f), help=help_text, show_default=False)
    elif f.metadata.get("argument"):
        annotation = Optional[list[str]] if typing.get_origin(base) is list else Optional[str]
        param = typer.Argument(typed_default, metavar=f.metadata.get("metavar") or f.name.upper(), help=help_text,
                               show_default=shown)
    elif base is None and words:  # a choice: click lists and checks the words
        annotation = Optional[Literal[words]]  # type: ignore[valid-type]
        param = typer.Option(typed_default, flag_name(f), help=help_text, show_default=shown)
    else:
        annotation = Optional[str]
        flags = (f.metadata.get("flag") or flag_name(f)).split()
        param = typer.Option(typed_default, *flags, metavar=_metavar(cls, f), help=help_text,
                             show_default=shown, envvar=f.metadata.get("envvar"))
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=param, annotation=annotation)


def options_command(run: Callable[..., None], *classes: type, doc: str, name: str) -> Callable[..., None]:
    """A Typer command whose options are the fields of `classes`; calls ``run(given)`` with a dict of
    the values given on the command line (or through an environment variable), keyed by field name.
    `spintui.options.build` then applies the dataclass defaults and checks every value."""
    seen: set[str] = set()
    params = []
    for cls in classes:
        for f in option_fields(cls):
            if f.name in seen or not f.metadata.get("cli", True):
                continue
            seen.add(f.name)
            params.append(_parameter(cls, f))

    def command(**kwargs: Any) -> None:
        ctx = get_current_context()
        run({key: value for key, value in kwargs.items()
             if ctx.get_parameter_source(key).name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")})

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name
    command.__doc__ = doc
    return command


# --------------------------------------------------------------------------------------------------
# Options that several commands share: one name and one help text each.


def runs_dir_option() -> Any:
    from spintui.profiles.runs import RUNS_DIR_ENV

    return option(None, "Directory of runs.", envvar=RUNS_DIR_ENV, metavar="DIR",
                  default_text="./runs")


def name_option(default_text: str) -> Any:
    return option(None, "Run name: letters, digits, '-', '_' or '.'.", default_text=default_text)


def headless_option(help: str) -> Any:
    return option(False, help)


def compare_baseline(compare: str | None, directory: Path, benchmark: str, described: str) -> Path | None:
    """The profile run --compare names, resolved before the new run exists (so 'latest' means the previous
    profile); it must be a profile of `benchmark` (`described` in the error). None without --compare."""
    if compare is None:
        return None
    from spintui.profiles.runs import resolve_run
    from spintui.profiles.store import read_manifest

    try:
        baseline = resolve_run(compare, directory, kind="profile")
    except RunError as exc:
        raise UsageError(f"--compare: {exc}") from None
    manifest = read_manifest(baseline)
    if manifest.get("kind") != "profile" or manifest.get("benchmark") != benchmark:
        what = manifest.get("algo") or manifest.get("benchmark") or "?"
        raise UsageError(f"--compare: {baseline.name} is a {manifest.get('kind')} run ({what}), not {described}")
    return baseline


def json_output_path(path: Path | None) -> Path | None:
    """--json FILE as an absolute path, refused unless it names a file in an existing directory."""
    if path is None:
        return None
    path = path.resolve()
    if path.is_dir() or not path.parent.is_dir():
        raise UsageError(f"--json: cannot write {path} (not a file in an existing directory)")
    return path

def threshold_option(default_text: str) -> Any:
    """--threshold of the profile commands' --compare."""
    return option(None, "Noise threshold of --compare as a fraction, 0.5 = 50%.",
                  range=Range(0, 10, lo_open=True, hi_open=True), default_text=default_text)


def resume_option() -> Any:
    return option(None, "Continue a stopped, crashed or killed run from its latest checkpoint, or every "
                  "unfinished run of an experiment; options given beside it must repeat the run's own.",
                  metavar="RUN|EXPERIMENT")


def runs_dir_or_default(runs_dir: Path | None) -> Path:
    from spintui.profiles.runs import default_runs_dir

    return runs_dir if runs_dir is not None else default_runs_dir()


def check_new_run_name(name: str | None, runs_dir: Path) -> None:
    """Refuse a --name that is invalid or taken, before anything is created."""
    if name is None:
        return
    if "/" in name or name in ("", ".", "..", "latest") or name.startswith("."):
        raise UsageError(f"--name {name!r} is not a valid run name: use letters, digits, '-', '_' or '.' "
                         f"(not 'latest')")
    if (runs_dir / name).exists():
        raise UsageError(f"--name {name!r} is taken in {runs_dir}; pick another --name")
