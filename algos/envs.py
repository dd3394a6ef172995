"""Environment checks shared by all algorithms: known ids and the right kind of action space.

Imports gymnasium (not torch), so the CLI can reject a bad `--env` before a run is created.
"""

from __future__ import annotations

import difflib

from spintui.errors import ConfigError


def registered_env_ids() -> list[str]:
    import gymnasium as gym

    return sorted(gym.envs.registry.keys())


def check_env_id(env_id: str) -> None:
    """Raise ConfigError naming the closest registered ids when `env_id` is unknown."""
    ids = registered_env_ids()
    if not env_id:
        raise ConfigError("--env is required, e.g. --env Pendulum-v1 (see gymnasium's registry)")
    if env_id in ids:
        return
    close = difflib.get_close_matches(env_id, ids, n=4, cutoff=0.5)
    lowered = [i for i in ids if env_id.lower().split("-")[0] in i.lower()][:4]
    suggestions = list(dict.fromkeys(close + lowered))[:4]
    hint = f"; closest registered ids: {', '.join(suggestions)}" if suggestions else ""
    raise ConfigError(f"unknown environment {env_id!r}{hint}")


def make_env(env_id: str, **kwargs):
    """gymnasium.make with a one-line error for environments whose extras are missing."""
    import gymnasium as gym

    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{env_id} needs an extra package: {first}") from None


def check_action_space(algo: str, env_id: str) -> None:
    """Refuse an action space the algorithm does not take, naming the algorithms that do."""
    from spintui.algos.registry import ALGORITHMS, BOX

    env = make_env(env_id)
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


def check_env(algo: str, env_id: str) -> None:
    check_env_id(env_id)
    check_action_space(algo, env_id)
