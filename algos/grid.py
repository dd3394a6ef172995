"""Grids of hyperparameters: several values per option become the Cartesian product of runs.

On the command line a scalar option takes a comma list (`--seed 0,1,2`, `--gamma 0.98,0.99`) and a
list-valued option takes `;` between its values (`--hidden-sizes "64,64;256,256"`); a `--grid
FILE.toml` gives lists of values per key. Points keep the order keys were given, with the seed last,
and each is named from its varying values as Spinning Up's ExperimentGrid does (`gamma0.98_s1`).
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass

from spintui.errors import ConfigError
from spintui.options import coerce, field_type, format_default, split_type, varies_in_grid

MAX_RUNS = 1000


@dataclass(frozen=True)
class GridPoint:
    name: str
    values: dict  # the varying keys' values at this point, coerced
    settings: dict  # every given key's value at this point (raw values for make_config)


def is_list_valued(cfg_cls: type, name: str) -> bool:
    base = split_type(field_type(cfg_cls, name))[0]
    return typing.get_origin(base) in (tuple, list)


def split_values(cfg_cls: type, name: str, raw) -> list:
    """The values one option was given: a TOML list, or text split on ',' (';' for list-valued options)."""
    flag = "--" + name.replace("_", "-")
    if not varies_in_grid(cfg_cls, name):
        if isinstance(raw, list):
            raise ConfigError(f"{flag} takes one value; it cannot vary in a grid")
        return [coerce(cfg_cls, name, raw)]
    if isinstance(raw, list) and not is_list_valued(cfg_cls, name):
        items = raw
    elif isinstance(raw, list) and raw and all(isinstance(v, list) for v in raw):
        items = raw  # a grid file's list of lists
    elif isinstance(raw, str):
        items = raw.split(";" if is_list_valued(cfg_cls, name) else ",")
        if any(not item.strip() for item in items):
            raise ConfigError(f"{flag}: empty value in {raw!r}; separate values with "
                              f"{'; (e.g. 64,64;256,256)' if is_list_valued(cfg_cls, name) else ', (e.g. 0,1,2)'}")
        items = [item.strip() for item in items]
    else:
        items = [raw]
    if not items:
        raise ConfigError(f"{flag}: give at least one value")
    values = [coerce(cfg_cls, name, item) for item in items]
    return list(dict.fromkeys(tuple(v) if isinstance(v, list) else v for v in values))


def value_label(value) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return format_default(value)
    return str(value)


def point_name(values: dict) -> str:
    parts = []
    for key, value in values.items():
        if key == "seed":
            continue
        label = value_label(value)
        parts.append(label if key == "env" else f"{key.replace('_', '-')}{label}")
    if "seed" in values:
        parts.append(f"s{values['seed']}")
    name = "_".join(parts) or "run"
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in name)


def expand(cfg_cls: type, given: dict, grid: dict | None = None, max_runs: int = MAX_RUNS
           ) -> tuple[list[str], list[GridPoint]]:
    """The varying keys and every point of the grid that `given` (command line) and `grid` (file) make.

    A key in both is refused: the command line would silently win over a list in the file."""
    grid = grid or {}
    known = {f for f in typing.get_type_hints(cfg_cls)}
    for key in grid:
        if key.replace("-", "_") not in known:
            raise ConfigError(f"--grid: no option {key!r}; accepted: "
                              f"{', '.join(k.replace('_', '-') for k in known)}")
    both = {k.replace("-", "_") for k in grid} & {k.replace("-", "_") for k in given}
    if both:
        raise ConfigError(f"--{sorted(both)[0].replace('_', '-')} is given on the command line and in --grid; "
                          f"give it in one place")
    lists = {}
    for key, raw in [*given.items(), *grid.items()]:
        name = key.replace("-", "_")
        lists[name] = split_values(cfg_cls, name, raw)
    varying = [k for k, v in lists.items() if len(v) > 1]
    varying = [k for k in varying if k != "seed"] + (["seed"] if "seed" in varying else [])
    count = 1
    for key in varying:
        count *= len(lists[key])
    if count > max_runs:
        raise ConfigError(f"the grid has {count:,} runs, more than --max-runs {max_runs:,}; give fewer values "
                          f"or raise --max-runs")
    points = []
    for combo in itertools.product(*(lists[k] for k in varying)):
        values = dict(zip(varying, combo))
        settings = {k: (values[k] if k in values else v[0]) for k, v in lists.items()}
        points.append(GridPoint(point_name(values), values, settings))
    return varying, points
