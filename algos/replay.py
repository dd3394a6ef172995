"""The replay buffer of DDPG, TD3 and SAC, and how it is saved beside a checkpoint for `--resume`.

Saved (``--save-buffer auto``, the default) when its capacity takes under 1 GiB: the rows filled so
far, the ring's write position and its shape, as one `torch.save` file that loads with
``weights_only=True``. A resumed run then samples the same transitions the stopped one would have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

AUTO_SAVE_LIMIT = 1 << 30  # --save-buffer auto: save buffers whose capacity takes less than this
FORMAT = 1


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


    # -- saving and loading (only at checkpoints: nothing here runs per step) -------------------
    @property
    def capacity_bytes(self) -> int:
        return self.size * self.width * 4

    def state(self) -> dict:
        """What a checkpoint saves: the filled rows (a copy unless the ring is full) and the position."""
        self.flush()  # staged rows go to the device now rather than before the next sample: same data
        rows = self.data if self.count == self.size else self.data[:self.count].clone()
        return {"format": FORMAT, "rows": rows.cpu(), "ptr": self.ptr, "count": self.count, "size": self.size,
                "width": self.width}

    def load_state(self, state: dict) -> None:
        """Refill from `state()`; ValueError when it was saved from a buffer of another shape."""
        rows = state.get("rows")
        if not isinstance(rows, torch.Tensor) or state.get("size") != self.size or state.get("width") != self.width \
                or rows.shape != (state.get("count"), self.width):
            raise ValueError(f"the saved replay buffer does not fit this run's ({self.size:,} x {self.width} rows)")
        self._staged = 0
        self.data[:rows.shape[0]] = rows.to(self.device)
        self.ptr, self.count = int(state["ptr"]), int(state["count"])


def saves_buffer(mode: str, buffer: ReplayBuffer) -> bool:
    """--save-buffer: always, never, or auto (when its capacity takes under 1 GiB)."""
    return mode == "always" or (mode == "auto" and buffer.capacity_bytes < AUTO_SAVE_LIMIT)


def describe(mode: str, buffer: ReplayBuffer) -> str:
    """The replay buffer's size and whether checkpoints hold it, for the run's first event."""
    size = f"replay buffer {format_bytes(buffer.capacity_bytes)} at capacity"
    if saves_buffer(mode, buffer):
        return f"{size}, saved with each checkpoint"
    why = "--save-buffer never" if mode == "never" else "over 1 GiB; --save-buffer always saves it"
    return f"{size}, not saved with checkpoints ({why})"


def format_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def load_buffer_file(path: Path, mmap: bool = False) -> dict:
    """A saved buffer (weights only); with `mmap`, a quick check that reads no rows."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("rows"), torch.Tensor):
        raise ValueError(f"{path.name} is not a saved replay buffer")
    return state
