"""A small environment that registers itself on import, for `--env envs_for_tests:Drift-v0`.

A point on a line pushed by a continuous action; each episode lasts `length` steps (a constructor
keyword, so tests can see that `--env-kwargs length=N` reached the environment in every process).
Renders small rgb_array frames, for video tests.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Drift(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, length: int = 20, target: float = 0.0, render_mode: str | None = None):
        self.length, self.target, self.render_mode = int(length), float(target), render_mode
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.pos, self.t = 0.0, 0

    def _obs(self):
        return np.array([self.pos, self.target], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = float(self.np_random.uniform(-1, 1)), 0
        return self._obs(), {}

    def step(self, action):
        self.pos = float(np.clip(self.pos + 0.1 * float(np.asarray(action).reshape(-1)[0]), -10, 10))
        self.t += 1
        return self._obs(), -abs(self.pos - self.target), self.t >= self.length, False, {}

    def render(self):
        frame = np.zeros((64, 64, 3), dtype=np.uint8)
        frame[:, int(np.clip((self.pos + 2) * 16, 0, 63))] = 255
        return frame


if "Drift-v0" not in gym.envs.registry:
    gym.register(id="Drift-v0", entry_point=Drift)
