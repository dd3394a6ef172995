"""Which code runs the gradient steps of DDPG, TD3 and SAC (--update), and the compiled path itself.

* `torch`: the eager update in the agents (sac.py, td3.py): autograd and torch's fused Adam.
* `native`: the C update (offpolicy_update.c through native.py), the CPU default.
* `compile`: the functional step of offpolicy_step.py compiled whole by torch.compile(fullgraph=True);
  on CUDA a whole block of updates is captured once as one CUDA graph and replayed, so a block
  costs one launch instead of hundreds of small kernels per update. The GPU default.

All three start from the same losses (offpolicy_losses.py) and are held equal by the tests.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from dataclasses import dataclass

import torch

from spintui.algos import native, offpolicy_step


@dataclass
class UpdatePath:
    name: str  # torch | native | compile
    why: str = ""  # why a faster path was not taken
    compile_seconds: float | None = None

    def describe(self) -> str:
        text = {"torch": "PyTorch update", "native": "compiled C update",
                "compile": "torch.compile update"}[self.name]
        if self.compile_seconds is not None:
            text += f" (compiled in {self.compile_seconds:.1f} s)"
        return f"{text} ({self.why})" if self.why else text


def compile_available(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return False, "torch.compile on CUDA needs triton"
        return True, ""
    if device.type != "cpu":
        return False, f"torch.compile is not set up here for {device.type}"
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX") or "g++", "c++", "clang++")):
        return False, "torch.compile on the CPU needs a C++ compiler (g++, c++ or clang++)"
    return True, ""


COMPILE_SPARSE_REASON = ("the compiled functional step works on dense weight matrices, and the hidden layers "
                         "are block-sparse")


def choose(update: str, device: torch.device, hidden_sizes=(), block_sparse: bool = False) -> UpdatePath:
    """The path for --update auto|native|compile|torch; ValueError when the one asked for cannot run here.

    auto: compile on CUDA, the C update on the CPU, else the eager update with the reason. Both
    faster paths work on dense weights, so block-sparse networks take the eager update."""
    if update == "torch":
        return UpdatePath("torch")
    if block_sparse and update == "compile":
        raise ValueError(f"--update compile is not available: {COMPILE_SPARSE_REASON}; use --update auto or torch")
    if update == "compile":
        ok, why = compile_available(device)
        if not ok:
            raise ValueError(f"--update compile is not available: {why}; use --update auto or torch")
        return UpdatePath("compile")
    if update == "native" or device.type == "cpu":
        if native.wanted(update, device, hidden_sizes, block_sparse):  # raises for native where it cannot run
            return UpdatePath("native")
        return UpdatePath("torch", f"compiled update unavailable: {native.why_not(device, hidden_sizes, block_sparse)}")
    if block_sparse:
        return UpdatePath("torch", COMPILE_SPARSE_REASON)
    ok, why = compile_available(device)
    return UpdatePath("compile") if ok else UpdatePath("torch", why)


def configure_compile_cache() -> None:
    """Keep inductor's compiled kernels in the user's cache (not /tmp), so later runs reuse them."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(native.cache_dir().parent / "inductor")
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True


class CompiledUpdate:
    """An agent's updates through the compiled functional step. `kind`: sac or td3 (DDPG is TD3's)."""

    def __init__(self, kind: str, agent, device: torch.device, compile: bool = True):
        """compile=False runs the same functional step uncompiled (tests and benchmarks compare the two)."""
        self.kind, self.agent, self.device = kind, agent, device
        step = offpolicy_step.sac_step_ if kind == "sac" else offpolicy_step.td3_step_
        if compile:
            configure_compile_cache()
            step = torch.compile(step, fullgraph=True, dynamic=False)
        self.fn = step
        self.graph, self.graph_key, self.static = None, None, {}

    def state(self) -> tuple[dict, dict]:
        return (offpolicy_step.sac_state if self.kind == "sac" else offpolicy_step.td3_state)(self.agent)

    def one(self, state, hp, o, a, r, o2, discount, noise, actor_step: bool) -> dict:
        if self.kind == "sac":
            return self.fn(state, o, a, r, o2, discount, noise, hp)
        return self.fn(state, o, a, r, o2, discount, noise, hp, actor_step)

    def warm_up(self, batch: int, obs_dim: int, act_dim: int, smoothing: bool = True, policy_delay: int = 1) -> float:
        """Compile now, on copies of the state (the agent's networks do not move); returns the seconds taken."""
        start = time.perf_counter()
        state, hp = self.state()
        copies = {key: [t.clone() for t in values] for key, values in state.items()}
        zeros = lambda *shape: torch.zeros(*shape, device=self.device)  # noqa: E731
        o, a, r = zeros(batch, obs_dim), zeros(batch, act_dim), zeros(batch)
        if self.kind == "sac":
            noise = zeros(2, batch, act_dim)
        else:
            noise = zeros(batch, act_dim) if smoothing else None
        with torch.no_grad():
            for actor_step in ((True,) if policy_delay == 1 else (True, False)):
                self.one(copies, hp, o, a, r, o, r, noise, actor_step)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    @torch.no_grad()
    def block(self, obs, act, rew, next_obs, discount, noise, policy_delay: int = 1) -> dict:
        """A block of n updates; stats stacked over the block (LossPi: one per actor step)."""
        state, hp = self.state()
        if self.device.type == "cuda":
            return self._graphed(state, hp, obs, act, rew, next_obs, discount, noise, policy_delay)
        outs = [self.one(state, hp, obs[j], act[j], rew[j], next_obs[j], discount[j],
                         None if noise is None else noise[j], j % policy_delay == 0) for j in range(obs.shape[0])]
        return stack(outs)

    def _graphed(self, state, hp, obs, act, rew, next_obs, discount, noise, policy_delay) -> dict:
        """The block replayed as one CUDA graph, captured on first use and again when the state's tensors
        are replaced (a loaded checkpoint) or the block's shape changes."""
        inputs = {"obs": obs, "act": act, "rew": rew, "next_obs": next_obs, "discount": discount, "noise": noise}
        key = (tuple(t.data_ptr() for values in state.values() for t in values), policy_delay,
               tuple(None if t is None else tuple(t.shape) for t in inputs.values()))
        if key != self.graph_key:
            self.static = {k: None if t is None else t.clone() for k, t in inputs.items()}
            s = self.static
            # Warm up on the capture stream first (as torch's CUDA graph docs ask), on copies of the state.
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                copies = {key: [t.clone() for t in values] for key, values in state.items()}
                for j in range(min(2, obs.shape[0])):
                    self.one(copies, hp, s["obs"][j], s["act"][j], s["rew"][j], s["next_obs"][j], s["discount"][j],
                             None if s["noise"] is None else s["noise"][j], j % policy_delay == 0)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            torch.cuda.synchronize(self.device)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream):
                outs = [self.one(state, hp, s["obs"][j], s["act"][j], s["rew"][j], s["next_obs"][j],
                                 s["discount"][j], None if s["noise"] is None else s["noise"][j],
                                 j % policy_delay == 0) for j in range(obs.shape[0])]
                self.static_out = stack(outs)
            self.graph_key = key
        for k, t in inputs.items():
            if t is not None:
                self.static[k].copy_(t)
        self.graph.replay()
        return {k: v.clone() for k, v in self.static_out.items()}


def stack(outs: list[dict]) -> dict:
    """Per-update stats stacked over a block: LossQ (n), Q (n, critics, batch), LossPi (one per actor step),
    LogPi (n, batch)."""
    return {key: torch.stack([o[key] for o in outs if key in o]) for key in outs[0]}


