"""The replay buffer of DDPG, TD3 and SAC."""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    """A preallocated ring of transitions on the device, one row per step: obs | act | rew | next_obs | done.

    `done` is gymnasium's `terminated` only: a truncated episode (time limit, max_ep_len) still
    bootstraps from its last observation. Rows are staged in host memory and copied to the device
    in one piece before sampling, so acting never waits on a small device copy.
    """

    def __init__(self, obs_dim: int, act_dim: int, size: int, device: torch.device, stage_rows: int = 1024):
        self.obs_dim, self.act_dim, self.size, self.device = obs_dim, act_dim, int(size), device
        self.width = 2 * obs_dim + act_dim + 2
        self.data = torch.zeros((self.size, self.width), dtype=torch.float32, device=device)
        self._stage = np.zeros((stage_rows, self.width), dtype=np.float32)
        self._staged = 0
        self.ptr = 0  # next row on the device
        self.count = 0  # rows on the device
        o, a = obs_dim, act_dim
        self._cols = (slice(0, o), slice(o, o + a), o + a, slice(o + a + 1, 2 * o + a + 1), 2 * o + a + 1)

    def __len__(self) -> int:
        return min(self.count + self._staged, self.size)

    def store(self, obs, act, rew: float, next_obs, done: bool) -> None:
        row = self._stage[self._staged]
        c_obs, c_act, c_rew, c_next, c_done = self._cols
        row[c_obs] = obs
        row[c_act] = act
        row[c_rew] = rew
        row[c_next] = next_obs
        row[c_done] = float(done)
        self._staged += 1
        if self._staged == len(self._stage):
            self.flush()

    def flush(self) -> None:
        n = self._staged
        if n == 0:
            return
        rows = torch.from_numpy(self._stage[:n]).to(self.device, non_blocking=False)
        first = min(n, self.size - self.ptr)
        self.data[self.ptr:self.ptr + first] = rows[:first]
        if first < n:  # wrapped around the ring
            self.data[:n - first] = rows[first:]
        self.ptr = (self.ptr + n) % self.size
        self.count = min(self.count + n, self.size)
        self._staged = 0

    def sample_block(self, n_batches: int, batch_size: int) -> tuple[torch.Tensor, ...]:
        """`n_batches` minibatches drawn at once: (obs, act, rew, next_obs, done), each (n_batches, batch, ...)."""
        self.flush()
        idx = torch.randint(0, self.count, (n_batches, batch_size), device=self.device)
        block = self.data[idx]
        o, a = self.obs_dim, self.act_dim
        obs, act, rew, next_obs, done = block.split([o, a, 1, o, 1], dim=-1)
        return obs, act, rew.squeeze(-1), next_obs, done.squeeze(-1)

