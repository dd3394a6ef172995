"""Typed options: every command's settings are a dataclass whose fields carry help, range and choices.

One description serves the command line (the CLI builds its options from the fields), `--config`
TOML files, validation and what a run records in `run.json`. Field types say what is accepted:

    int, float, str, bool, Path        plain values (floats must be finite)
    Literal["a", "b"]                  one of the listed words; `--help` lists them
    float | Literal["auto"]            a number or one of the words
    tuple[int, ...]                    comma-separated integers, e.g. 256,256
    dict[str, Any]                     key=value pairs, e.g. g=9.81,render_mode=rgb_array (TOML: a table);
                                       values become int, float, bool or str (quote to keep text)
    tuple[Literal["a", "b"], ...]      comma-separated words, each one of the listed, e.g. a,b
    list[str]                          several words (positional arguments)
    X | None                           also "none" / empty: not set

`option(default, help, range=...)` declares a field; `build(cls, values)` checks raw values (from a
command line or TOML) against the fields and the class's `check()` and returns the instance, or
raises ConfigError with one line naming the option, the value and what is accepted.

This module imports nothing heavy and nothing else of spintui but its errors, so every layer can
declare its options with it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from spintui.errors import ConfigError

__all__ = ["Range", "option", "build", "coerce", "accepted", "flag_name", "option_fields", "split_type",
           "item_words", "field_type", "format_default", "to_dict", "parse_mapping", "format_mapping",
           "varies_in_grid", "POSITIVE", "NON_NEGATIVE", "AT_LEAST_1", "UNIT", "LEARNING_RATE", "SEED"]


@dataclass(frozen=True)
class Range:
    """An interval of accepted numbers; open ends exclude the bound."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return ""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
UNIT = Range(0, 1)
LEARNING_RATE = Range(0, 1, lo_open=True)
SEED = Range(0, 2**32 - 1)  # numpy's seeds


def option(default: Any = dataclasses.MISSING, help: str = "", *, range: Range | None = None,
           flag: str | None = None, argument: bool = False, envvar: str | None = None,
           metavar: str | None = None, default_text: str | None = None,
           parse: Callable[[str], Any] | None = None, cli: bool = True, grid: bool = True) -> Any:
    """A field of an options dataclass.

    `range` bounds numbers (each item of a tuple); `flag` overrides the option's name on the
    command line (default: --field-name; "--output -o" gives it a short name too); `argument` makes it positional; `default_text` is shown
    instead of the default in help; `parse` turns command-line text into the value (and raises
    ConfigError itself) for types this module does not know; `cli=False` keeps a field off the
    command line; `grid=False` keeps a field to one value in a grid of runs (commas in its text
    are part of the value).
    """
    meta = {"help": help, "range": range, "flag": flag, "argument": argument, "envvar": envvar,
            "metavar": metavar, "default_text": default_text, "parse": parse, "cli": cli, "grid": grid}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=functools.partial(type(default), default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------
# Field introspection


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def option_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


def field_type(cls: type, name: str) -> Any:
    return _hints(cls)[name]


def flag_name(f: dataclasses.Field) -> str:
    """The option's name on the command line (the first of a `flag` such as "--output -o")."""
    return (f.metadata.get("flag") or "--" + f.name.replace("_", "-")).split()[0]


def split_type(tp: Any) -> tuple[Any, bool, tuple[str, ...]]:
    """(base type, accepts None, words accepted besides the base type)."""
    optional, words, rest = False, [], []
    for arg in _union_args(tp):
        if arg is type(None):
            optional = True
        elif typing.get_origin(arg) is Literal:
            words.extend(typing.get_args(arg))
        else:
            rest.append(arg)
    base = rest[0] if len(rest) == 1 else None
    return base, optional, tuple(words)


def _union_args(tp: Any) -> tuple:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def choices(cls: type, name: str) -> tuple[str, ...]:
    """The words a field accepts (its Literal values, or those of its tuple's items)."""
    base, _, words = split_type(field_type(cls, name))
    return words or item_words(base)


def item_words(tp: Any) -> tuple[str, ...]:
    """The words each item of a ``tuple[Literal[...], ...]`` may be; () for other types."""
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        if typing.get_origin(item) is Literal:
            return tuple(typing.get_args(item))
    return ()


# --------------------------------------------------------------------------------------------------
# Describing and checking values


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "text", Path: "a path"}


def accepted(cls: type, f: dataclasses.Field) -> str:
    """What a field accepts, in words: 'a number in (0, 1]', 'one of auto, cpu, cuda', ..."""
    base, optional, words = split_type(field_type(cls, f.name))
    rng: Range | None = f.metadata.get("range")
    bound = f" {rng.describe()}" if rng is not None and rng.describe() else ""
    parts = []
    if base is not None:
        if item_words(base):
            parts.append(f"comma-separated words from {', '.join(item_words(base))}")
        elif typing.get_origin(base) is tuple:
            parts.append(f"comma-separated integers{bound}, e.g. 256,256")
        elif typing.get_origin(base) is dict:
            parts.append("key=value pairs separated by commas (a table in TOML)")
        elif typing.get_origin(base) is list:
            parts.append("one or more words")
        else:
            parts.append(_KIND.get(base, getattr(base, "__name__", str(base))) + bound)
    if words:
        parts.append(("one of " if base is None else "") + ", ".join(words))
    if optional:
        parts.append("none")
    return " or ".join(parts)


def coerce(cls: type, name: str, value: Any) -> Any:
    """Turn a raw value (command-line text or a TOML value) into the field's type, or raise
    ConfigError naming the option, the value and what is accepted."""
    f = {f.name: f for f in option_fields(cls)}[name]
    base, optional, words = split_type(field_type(cls, name))
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))):
        return None
    if isinstance(value, str) and value.strip() in words:
        return value.strip()
    parse = f.metadata.get("parse")
    try:
        if parse is not None and isinstance(value, str):
            out = parse(value)
        elif base is None:
            raise ValueError
        else:
            out = _convert(base, value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{flag_name(f)} must be {accepted(cls, f)}, got {_show(value)}") from None
    rng: Range | None = f.metadata.get("range")
    if rng is not None:
        items = out if isinstance(out, tuple) else (out,)
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) and v not in rng for v in items):
            raise ConfigError(f"{flag_name(f)} must be {accepted(cls, f)}, got {_show(value)}")
    return out


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


_PAIR = re.compile(r"""\s*([A-Za-z_][\w.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^,]*?)\s*(?:,|$)""")
MAPPING_VALUES = (bool, int, float, str)


def parse_mapping(text: str) -> dict[str, Any]:
    """`key=value,...` as a dict: each value an int, float, bool (true/false) or, failing those, text;
    a quoted value ("a,b" or '1') stays text. Raises ValueError on anything else."""
    out: dict[str, Any] = {}
    pos, text = 0, text.strip()
    while pos < len(text):
        match = _PAIR.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(text)
        key, raw = match.group(1), match.group(2)
        if raw[:1] in "\"'" and len(raw) >= 2 and raw[-1] == raw[0]:
            value: Any = raw[1:-1].replace('\\"', '"') if raw[0] == '"' else raw[1:-1]
        elif raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            value = _number_or_text(raw)
        if key in out or value == "":
            raise ValueError(text)
        out[key] = value
        pos = match.end()
    return out


def _number_or_text(raw: str) -> Any:
    for kind in (int, float):
        try:
            number = kind(raw)
        except ValueError:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(raw)
        return number
    return raw


def format_mapping(value: Mapping[str, Any]) -> str:
    """A mapping as `key=value,...`, the way `parse_mapping` reads it back."""
    return ",".join(f"{k}={_show_mapping_value(v)}" for k, v in value.items())


def _show_mapping_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if not isinstance(v, str):
        return repr(v)
    try:
        plain = bool(v) and v == v.strip() and not any(c in v for c in ",\"'") \
            and v.lower() not in ("true", "false") and _number_or_text(v) == v
    except ValueError:  # inf, nan
        plain = False
    return v if plain else '"' + v.replace('"', '\\"') + '"'


def _convert(tp: Any, value: Any) -> Any:
    if typing.get_origin(tp) is dict:
        mapping = parse_mapping(value) if isinstance(value, str) else value
        if not isinstance(mapping, Mapping) or not all(
                isinstance(k, str) and k and isinstance(v, MAPPING_VALUES)
                and not (isinstance(v, float) and not math.isfinite(v)) for k, v in mapping.items()):
            raise ValueError(value)
        return dict(mapping)
    if typing.get_origin(tp) is tuple:
        items = value.replace(" ", "").split(",") if isinstance(value, str) else list(value)
        words = item_words(tp)
        if words:
            if any(v not in words for v in items):
                raise ValueError
            out = tuple(dict.fromkeys(items))  # in order, each once
        else:
            out = tuple(_convert(int, v) for v in items)
        if not out:
            raise ValueError
        return out
    if typing.get_origin(tp) is list:
        items = [value] if isinstance(value, str) else list(value)
        return [str(v) for v in items]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            number = float(text) if any(c in text.lower() for c in ".e") else int(text)
        else:
            number = value
        if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
            raise ValueError
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ValueError
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ValueError
        return Path(value).expanduser()
    raise TypeError(f"unsupported option type {tp}")


def build(cls: type, values: Mapping[str, Any], *, what: str | None = None) -> Any:
    """An options instance from raw values keyed by field name (dashes or underscores).

    Unknown keys are refused with the closest name and the list of accepted ones; then the class's
    `check()` (if any) checks the fields together.
    """
    fields = {f.name: f for f in option_fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
            names = ", ".join(n.replace("_", "-") for n in fields)
            raise ConfigError(f"{what or cls.__name__} has no setting {key!r}{hint}; accepted: {names}")
        kwargs[name] = coerce(cls, name, value)
    missing = [f for f in fields.values() if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{flag_name(missing[0])} is required ({missing[0].metadata.get('help', '')})")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check()
    return obj


def varies_in_grid(cls: type, name: str) -> bool:
    """Whether a field may take several values in a grid (not `grid=False` fields, not mappings)."""
    f = {f.name: f for f in option_fields(cls)}[name]
    base = split_type(field_type(cls, name))[0]
    return f.metadata.get("grid", True) and typing.get_origin(base) is not dict


def to_dict(obj: Any) -> dict:
    """JSON-ready values of an options instance (tuples become lists, paths text)."""
    out = {}
    for f in option_fields(type(obj)):
        value = getattr(obj, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


def format_default(value: Any) -> str:
    """A default as a user would type it."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return format_mapping(value)
    if isinstance(value, float):
        return _num(value) if abs(value) >= 1e-3 or value == 0 else f"{value:g}"
    return str(value)
