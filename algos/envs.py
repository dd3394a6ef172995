"""Environment checks shared by all algorithms: known ids and the right kind of action space.

Imports gymnasium (not torch), so the CLI can reject a bad `--env` before a run is created. An id
may name the module that registers it, gymnasium's `package.module:EnvName-v0`; the module is
imported (with the current directory on the path, as the trainer has it) before the id is looked
up. `env_kwargs` (the run's `--env-kwargs`) go to the environment's constructor everywhere the
run's environment is built: training, test episodes, `eval` and resumed runs.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys

from spintui.errors import ConfigError


def registered_env_ids() -> list[str]:
    import gymnasium as gym

    return sorted(gym.envs.registry.keys())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def import_env_module(env_id: str) -> str:
    """Import the module of a `module:EnvName-v0` id (it registers the id); returns the bare id."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    if not module or not name:
        raise ConfigError(f"--env {env_id!r}: write package.module:EnvName-v0")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError or any error the module raises while importing
        raise ConfigError(f"--env {env_id}: cannot import module {module!r} ({_first_line(exc)})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    return name


def check_env_id(env_id: str) -> None:
    """Raise ConfigError naming the closest registered ids when `env_id` is unknown."""
    if not env_id:
        raise ConfigError("--env is required, e.g. --env Pendulum-v1 (see gymnasium's registry)")
    name = import_env_module(env_id)
    ids = registered_env_ids()
    if name in ids:
        return
    close = difflib.get_close_matches(name, ids, n=4, cutoff=0.5)
    lowered = [i for i in ids if name.lower().split("-")[0] in i.lower()][:4]
    suggestions = list(dict.fromkeys(close + lowered))[:4]
    hint = f"; closest registered ids: {', '.join(suggestions)}" if suggestions else ""
    where = f" (module {env_id.partition(':')[0]!r} does not register it)" if ":" in env_id else ""
    raise ConfigError(f"unknown environment {name!r}{where}{hint}")


def make_env(env_id: str, env_kwargs: dict | None = None, **kwargs):
    """gymnasium.make(env_id, **env_kwargs, **kwargs), with one-line errors for environments whose
    extras are missing and for keyword arguments the environment does not take."""
    import gymnasium as gym

    import_env_module(env_id)
    try:
        return gym.make(env_id, **{**(env_kwargs or {}), **kwargs})
    except gym.error.DependencyNotInstalled as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{env_id} needs an extra package: {first}") from None
    except Exception as exc:
        if not env_kwargs:
            raise
        raise ConfigError(f"{env_id} does not take --env-kwargs {format_kwargs(env_kwargs)} "
                          f"({_first_line(exc)})") from None


def format_kwargs(env_kwargs: dict) -> str:
    from spintui.options import format_mapping

    return format_mapping(env_kwargs)


def check_action_space(algo: str, env_id: str, env_kwargs: dict | None = None) -> None:
    """Refuse an action space the algorithm does not take, naming the algorithms that do."""
    from spintui.algos.registry import ALGORITHMS, BOX

    env = make_env(env_id, env_kwargs)
    try:
        space = env.action_space
    finally:
        env.close()
    kind = type(space).__name__
    accepted = ALGORITHMS[algo].action_spaces
    if kind not in accepted:
        fits = [a.name for a in ALGORITHMS.values() if kind in a.action_spaces]
        need = "a continuous (Box)" if accepted == (BOX,) else " or ".join(accepted)
        hint = f"; try {fits[-1] if len(fits) == 1 else 'ppo'}" if fits else ""
        raise ConfigError(f"{algo} needs {need} action space; {env_id} has {space}{hint}")


def check_env(algo: str, env_id: str, env_kwargs: dict | None = None) -> None:
    """The id is registered (after importing its module), the environment takes `env_kwargs`, and
    its action space fits `algo`."""
    check_env_id(env_id)
    check_action_space(algo, env_id, env_kwargs)
