"""Which runs are seeds of one configuration: the same config except the seed.

Pure functions over plain dicts (no I/O), for anything that compares runs: `spintui plot` draws a
group as a mean line with a +- std band, and each run's Spinning Up `config.json` names its group in
`exp_name` (so Spinning Up's own plot.py groups spintui runs the same way).

What identifies a configuration: the algorithm, the environment and every resolved option except
`IGNORED` (the seed, and where the run is mirrored, which changes no result).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

IGNORED = ("seed", "tensorboard")


def configuration(algo: str | None, env: str | None, config: Mapping[str, Any]) -> dict:
    """The settings that make a configuration: algo, env and the config less `IGNORED`."""
    out = {"algo": algo, "env": env}
    out.update({k: v for k, v in config.items() if k not in IGNORED and k not in out})
    return out


def config_key(config: Mapping[str, Any], ignore: Sequence[str] = IGNORED) -> str:
    """A canonical text of `config` less `ignore`: equal for seeds of one configuration."""
    kept = {k: v for k, v in config.items() if k not in ignore}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)


def group_by_config(configs: Sequence[Mapping[str, Any]], ignore: Sequence[str] = IGNORED) -> list[list[int]]:
    """Indices of `configs` grouped by their config less `ignore` (default: the seed), groups in the
    order their first member appears, members in input order."""
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(config_key(config, ignore), []).append(index)
    return list(groups.values())


def differing_keys(configs: Sequence[Mapping[str, Any]], ignore: Sequence[str] = IGNORED) -> list[str]:
    """The keys whose values are not the same in every config (in first-seen order)."""
    keys = list(dict.fromkeys(k for c in configs for k in c if k not in ignore))
    return [k for k in keys
            if len({json.dumps(c[k], sort_keys=True, default=str) if k in c else None for c in configs}) > 1]


def group_labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """A legend label per configuration (one config per group): a Spinning Up run's exp_name, else
    the settings that tell spintui configurations apart, e.g. 'gamma=0.98'; for a single one, its
    algorithm and environment."""
    ours = [c for c in configs if "exp_name" not in c]
    keys = differing_keys(ours) if len(ours) > 1 else []
    labels = []
    for config in configs:
        if "exp_name" in config:
            labels.append(str(config["exp_name"]))
        elif keys:
            labels.append(", ".join(f"{k}={_show(config.get(k))}" for k in keys))
        else:
            labels.append(" ".join(str(config[k]) for k in ("algo", "env") if config.get(k)) or "run")
    return labels


def exp_name(algo: str | None, env: str | None, config: Mapping[str, Any]) -> str:
    """Spinning Up's exp_name for a run: equal for the seeds of one configuration."""
    digest = hashlib.sha1(config_key(configuration(algo, env, config)).encode()).hexdigest()[:8]
    env_part = (env or "").rsplit(":", 1)[-1]
    return "_".join(part for part in (algo, env_part, digest) if part)


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)
