"""Deep Deterministic Policy Gradient as Spinning Up's ddpg.py has it (Lillicrap et al. 2016): TD3's
agent (td3.py) with one critic, no target policy smoothing and the actor and targets stepped after
every critic step, at DDPGConfig's defaults (Spinning Up's DDPG defaults)."""

from __future__ import annotations

import torch

from spintui.algos.config import DDPGConfig
from spintui.algos.offpolicy import run_off_policy
from spintui.algos.td3 import TD3, load_policy  # noqa: F401  (spintui eval loads DDPG's policy as TD3's)


class DDPG(TD3):
    def __init__(self, cfg: DDPGConfig, obs_space, act_space, device: torch.device):
        super().__init__(cfg, obs_space, act_space, device, critics=1, smoothing=False, policy_delay=1)


def train(cfg: DDPGConfig, run, resume: dict | None = None) -> dict:
    """Train DDPG on cfg.env, logging into `run` (a profiles.store.RunWriter), from `resume` (a checkpoint) if given."""
    return run_off_policy(cfg, run, "ddpg", DDPG, resume)
