"""One epoch of on-policy experience: vector environments stepped with the current policy, then
GAE-lambda advantages and rewards-to-go.

``Rollout`` steps ``num_envs`` environments (gymnasium.vector, same-step autoreset) for one epoch and
reports finished episodes. An episode that ends by truncation (a time limit, ``max_ep_len``) or by
the epoch cut-off bootstraps from the value of the state it stopped in; only termination counts as
a zero-value end. Environments keep running across epochs, so long episodes are not cut short by
the epoch size.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from spintui.algos.actor_critic import MLPActorCritic
from spintui.algos.data_parallel import global_mean_std
from spintui.algos.envs import make_env


def gae_advantages(rew: np.ndarray, val: np.ndarray, ended: np.ndarray, end_val: np.ndarray,
                   last_val: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE-lambda advantages and rewards-to-go for arrays shaped [steps, envs].

    ``ended[t]`` marks an episode that ended at step t; ``end_val[t]`` is then the value to bootstrap
    from: 0 after termination, V(final observation) after truncation. ``last_val`` is V(s) of the
    state each env is in after the last step (the epoch cut-off bootstrap).
    """
    steps = rew.shape[0]
    adv = np.zeros_like(rew)
    ret = np.zeros_like(rew)
    next_adv = np.zeros_like(last_val)
    next_ret = last_val
    next_val = last_val
    for t in reversed(range(steps)):
        cont = 1.0 - ended[t]
        boot = np.where(ended[t], end_val[t], next_val)
        delta = rew[t] + gamma * boot - val[t]
        next_adv = adv[t] = delta + gamma * lam * cont * next_adv
        next_ret = ret[t] = rew[t] + gamma * np.where(ended[t], end_val[t], next_ret)
        next_val = val[t]
    return adv, ret


def make_vector_env(env_id: str, num_envs: int, max_ep_len: int,
                    env_kwargs: dict | None = None) -> gym.vector.SyncVectorEnv:
    def make_one():
        # An extra TimeLimit: episodes end at min(the env's own limit, max_ep_len), as truncations.
        return gym.wrappers.TimeLimit(make_env(env_id, env_kwargs), max_episode_steps=max_ep_len)

    return gym.vector.SyncVectorEnv([make_one for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, copy=False)


class Rollout:
    """Runs `num_envs` environments and keeps one epoch of experience ([steps, envs] arrays)."""

    def __init__(self, env_id: str, num_envs: int, steps_per_env: int, max_ep_len: int, seed: int, device,
                 env_kwargs: dict | None = None):
        self.envs = make_vector_env(env_id, num_envs, max_ep_len, env_kwargs)
        self.obs, _ = self.envs.reset(seed=seed)  # env i gets seed + i
        self.envs.action_space.seed(seed)
        self.envs.observation_space.seed(seed)
        self.device = device
        self.steps, self.num_envs = steps_per_env, num_envs
        space = self.envs.single_action_space
        self.box = isinstance(space, gym.spaces.Box)
        self.low, self.high = (space.low, space.high) if self.box else (None, None)
        obs_shape = self.envs.single_observation_space.shape
        act_shape = space.shape if self.box else ()
        self.obs_buf = np.zeros((steps_per_env, num_envs, *obs_shape), dtype=np.float32)
        self.act_buf = np.zeros((steps_per_env, num_envs, *act_shape), dtype=np.float32 if self.box else np.int64)
        self.rew_buf = np.zeros((steps_per_env, num_envs), dtype=np.float32)
        self.ended_buf = np.zeros((steps_per_env, num_envs), dtype=bool)
        self.end_val_buf = np.zeros((steps_per_env, num_envs), dtype=np.float32)
        self.truncated_obs: list[tuple[int, int, np.ndarray]] = []  # (t, env, final obs) to bootstrap from
        self.ep_ret = np.zeros(num_envs)
        self.ep_len = np.zeros(num_envs, dtype=np.int64)

    def restart(self) -> None:
        """Every environment starts a fresh episode (after a resume), from its own generator."""
        self.obs, _ = self.envs.reset()
        self.ep_ret[:] = 0.0
        self.ep_len[:] = 0

    def collect(self, ac: MLPActorCritic, on_episode: Callable[[int, float, int], None],
                should_stop: Callable[[int], bool]) -> bool:
        """Fill the buffer with one epoch of steps; False if `should_stop(t)` cut it short."""
        self.truncated_obs.clear()
        self.ended_buf[:] = False
        self.end_val_buf[:] = 0.0
        for t in range(self.steps):
            if should_stop(t):
                return False
            # Store before stepping: with copy=False the vector env reuses its observation array.
            self.obs_buf[t] = self.obs
            act = ac.pi.sample(torch.as_tensor(self.obs_buf[t], device=self.device)).cpu().numpy()
            # The env gets the action clipped to its bounds; the buffer keeps the sample for log-probs.
            env_act = np.clip(act, self.low, self.high) if self.box else act
            next_obs, rew, terminated, truncated, info = self.envs.step(env_act)
            self.act_buf[t], self.rew_buf[t] = act, rew
            self.ep_ret += rew
            self.ep_len += 1
            ended = terminated | truncated
            if ended.any():
                self.ended_buf[t] = ended
                for i in np.flatnonzero(ended):
                    if truncated[i] and not terminated[i]:
                        self.truncated_obs.append((t, i, np.array(info["final_obs"][i], dtype=np.float32)))
                    on_episode(t, float(self.ep_ret[i]), int(self.ep_len[i]))
                self.ep_ret[ended] = 0.0
                self.ep_len[ended] = 0
            self.obs = next_obs
        return True

    @torch.no_grad()
    def finish(self, ac: MLPActorCritic, gamma: float, lam: float) -> dict[str, torch.Tensor]:
        """Values, log-probs of the stored actions, normalized advantages and returns, flattened."""
        steps, n = self.steps, self.num_envs
        obs = torch.as_tensor(self.obs_buf.reshape(steps * n, *self.obs_buf.shape[2:]), device=self.device)
        act = torch.as_tensor(self.act_buf.reshape(steps * n, *self.act_buf.shape[2:]), device=self.device)
        # Parameters do not change during a rollout, so one batched pass gives the same values and
        # log-probs as computing them step by step, at a fraction of the cost.
        val = ac.value(obs)
        logp = ac.pi.distribution(obs).log_prob(act)
        last_val = ac.value(torch.as_tensor(self.obs.astype(np.float32), device=self.device)).cpu().numpy()
        if self.truncated_obs:
            final = torch.as_tensor(np.stack([o for _, _, o in self.truncated_obs]).astype(np.float32),
                                    device=self.device)
            final_val = ac.value(final).cpu().numpy()
            for (t, i, _), v in zip(self.truncated_obs, final_val):
                self.end_val_buf[t, i] = v
        val_np = val.cpu().numpy().reshape(steps, n)
        adv, ret = gae_advantages(self.rew_buf, val_np, self.ended_buf, self.end_val_buf, last_val, gamma, lam)
        adv_mean, adv_std = global_mean_std(adv)
        adv = (adv - adv_mean) / (adv_std + 1e-8)

        def flat(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x.reshape(steps * n), dtype=torch.float32, device=self.device)

        return {"obs": obs, "act": act, "ret": flat(ret), "adv": flat(adv), "logp": logp, "val": val}

    def close(self) -> None:
        self.envs.close()
