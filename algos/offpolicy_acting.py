"""How DDPG, TD3 and SAC pick their action for one observation per env step.

On the CPU a dense actor acts through `NumpyActor`: the same forward as the actor's (offpolicy_losses:
`deterministic_action`, `squashed_gaussian`) written in NumPy over views of the actor's own parameter
memory, so every update is seen without a copy. For one observation torch spends most of an action in
per-operator dispatch; NumPy does the same arithmetic with a fraction of that overhead
(benchmarks/bench_offpolicy.py times the whole training loop). Block-sparse actors act through torch.
On CUDA the trainer measures the actor on the GPU against a CPU copy of it and acts with the faster.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from spintui.algos.offpolicy_losses import LOG_STD_MAX, LOG_STD_MIN


def mlp_numpy(params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """offpolicy_nets.mlp_forward in NumPy: ReLU hidden layers, linear output, W stored (in, out)."""
    last = len(params) - 2
    for i in range(0, last, 2):
        x = x @ params[i]
        x += params[i + 1]
        np.maximum(x, 0, out=x)
    return x @ params[last] + params[last + 1]


class NumpyActor:
    """A dense CPU actor's action for one observation (a NumPy vector in, a float32 vector out).

    `squashed`: SAC's tanh-squashed Gaussian (its N(0, 1) draw from NumPy's global generator, which
    checkpoints save); otherwise DDPG's and TD3's deterministic mu(o)."""

    def __init__(self, actor: torch.nn.Module, squashed: bool):
        self.actor, self.squashed = actor, squashed
        self.refresh()

    def refresh(self) -> None:
        """Take views of the actor's current parameter memory (again after anything may have replaced it)."""
        self.params = [p.detach().numpy() for p in policy_mlp(self.actor, self.squashed).params]
        self.scale = self.actor.act_scale.numpy()
        self.center = self.actor.act_center.numpy()
        self.act_dim = self.scale.shape[0]

    def __call__(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        u = mlp_numpy(self.params, np.asarray(obs, dtype=np.float32))
        if self.squashed:
            mu, log_std = u[:self.act_dim], u[self.act_dim:]
            if deterministic:
                u = mu
            else:
                std = np.exp(np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX))
                u = mu + std * np.random.standard_normal(self.act_dim).astype(np.float32)
        return (self.center + np.tanh(u) * self.scale).astype(np.float32, copy=False)


class TorchActor:
    """The actor module itself on `device`, as a NumPy-in, NumPy-out policy."""

    def __init__(self, actor: torch.nn.Module, device: torch.device, squashed: bool):
        self.actor, self.device, self.squashed = actor, device, squashed

    def refresh(self) -> None:
        pass

    @torch.inference_mode()
    def __call__(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        if self.squashed:
            action, _ = self.actor(obs_t, deterministic=deterministic, with_logprob=False)
        else:
            action = self.actor(obs_t)
        return action[0].cpu().numpy()


def policy_mlp(actor: torch.nn.Module, squashed: bool):
    """The actor's MLP: SAC's outputs mean and log-std (`net`), DDPG's and TD3's mu(o) (`pi`)."""
    return actor.net if squashed else actor.pi


def is_dense(actor: torch.nn.Module, squashed: bool) -> bool:
    layouts = policy_mlp(actor, squashed).layouts
    return not any(layout is not None for layout in (layouts or ()))


def cpu_policy(actor: torch.nn.Module, squashed: bool):
    """The fastest way a CPU actor acts: NumPy when dense, else the module."""
    if is_dense(actor, squashed):
        return NumpyActor(actor, squashed)
    return TorchActor(actor, torch.device("cpu"), squashed)


class Acting:
    """Where the agent picks its actions (see the module's docstring); `policy(obs, deterministic)`.
    A CPU copy of a CUDA actor follows it after each update block (`refresh`)."""

    def __init__(self, actor: torch.nn.Module, device: torch.device, obs_dim: int, squashed: bool):
        self.actor, self.squashed = actor, squashed
        self.timings: tuple[float, float] | None = None
        self.cpu_copy: torch.nn.Module | None = None
        if device.type == "cuda":
            cpu_copy = copy.deepcopy(actor).to("cpu")
            on_device = time_acting(TorchActor(actor, device, squashed), obs_dim)
            on_cpu_policy = cpu_policy(cpu_copy, squashed)
            on_cpu = time_acting(on_cpu_policy, obs_dim)
            self.timings = (on_device, on_cpu)
            if on_cpu < on_device:
                self.cpu_copy, self.policy = cpu_copy, on_cpu_policy
            else:
                self.policy = TorchActor(actor, device, squashed)
        else:
            self.policy = cpu_policy(actor, squashed)

    @torch.no_grad()
    def refresh(self) -> None:
        if self.cpu_copy is not None:
            for mine, theirs in zip(self.cpu_copy.parameters(), self.actor.parameters()):
                mine.copy_(theirs)
        self.policy.refresh()

    def describe(self) -> str:
        if self.timings is None:
            return ""
        where = "a CPU copy of the actor" if self.cpu_copy is not None else "the actor on the GPU"
        return (f"; acting with {where} ({self.timings[0] * 1e6:.0f} us per action on the GPU, "
                f"{self.timings[1] * 1e6:.0f} us on the CPU)")


def time_acting(policy, obs_dim: int, n: int = 200) -> float:
    """Seconds per action of `policy` on one observation from NumPy, its action back in NumPy (median of 3)."""
    obs = np.zeros(obs_dim, dtype=np.float32)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            policy(obs, True)
        times.append((time.perf_counter() - start) / n)
    return sorted(times)[1]
