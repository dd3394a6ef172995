"""The six algorithms: name, options class, module, one-line summary and the action spaces each takes.

The one place that says which algorithms exist; the CLI, the launcher, `eval` and the environment
checks read it. Importing it imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from spintui.algos.config import (DDPGConfig, PPOConfig, RunConfig, SACConfig, TD3Config, TRPOConfig,
                                  VPGConfig)
from spintui.errors import ConfigError

BOX, DISCRETE = "Box", "Discrete"


@dataclass(frozen=True)
class Algorithm:
    name: str
    config: type[RunConfig]
    module: str  # exposes train(cfg, writer) and load_policy(checkpoint, device)
    summary: str
    action_spaces: tuple[str, ...]

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("vpg", VPGConfig, "spintui.algos.vpg", "Vanilla policy gradient with GAE (on-policy).",
              (BOX, DISCRETE)),
    Algorithm("trpo", TRPOConfig, "spintui.algos.trpo", "Trust region policy optimization (on-policy).",
              (BOX, DISCRETE)),
    Algorithm("ppo", PPOConfig, "spintui.algos.ppo", "Proximal policy optimization, clipped objective "
              "(on-policy).", (BOX, DISCRETE)),
    Algorithm("ddpg", DDPGConfig, "spintui.algos.ddpg", "Deep deterministic policy gradient (off-policy, "
              "continuous actions).", (BOX,)),
    Algorithm("td3", TD3Config, "spintui.algos.td3", "Twin delayed DDPG (off-policy, continuous actions).",
              (BOX,)),
    Algorithm("sac", SACConfig, "spintui.algos.sac", "Soft actor-critic (off-policy, continuous actions).",
              (BOX,)),
)}


def algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r}; accepted: {', '.join(ALGORITHMS)}") from None
