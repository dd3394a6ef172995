"""Environment checks shared by all algorithms: known ids and the right kind of action space.

Imports gymnasium (not torch), so the CLI can reject a bad `--env` before a run is created.
"""

from __future__ import annotations

import difflib

from spintui.algos.config import ConfigError

CONTINUOUS_ONLY = {"ddpg", "td3", "sac"}


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
    """Off-policy algorithms here need Box actions; say which algorithms fit otherwise."""
    import gymnasium as gym

    env = make_env(env_id)
    try:
        space = env.action_space
        if algo in CONTINUOUS_ONLY and not isinstance(space, gym.spaces.Box):
            raise ConfigError(
                f"{algo} needs a continuous (Box) action space; {env_id} has {space}; try ppo"
            )
        if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise ConfigError(f"{algo} supports Box or Discrete action spaces; {env_id} has {space}")
    finally:
        env.close()


def check_env(algo: str, env_id: str) -> None:
    check_env_id(env_id)
    check_action_space(algo, env_id)
