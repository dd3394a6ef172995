"""The compiled CPU update (algos/offpolicy_update.c) against the eager PyTorch update it replaces.

Both start from the same networks and consume the same randomness, so after a few gradient steps
their parameters, target networks, Adam state and logged statistics must agree to float rounding.
(Over many steps they drift apart chaotically, as two BLAS libraries would: Adam's first steps turn
rounding-level gradients into full-size steps, so the comparison uses short blocks.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from spintui.algos import native
from spintui.algos.config import make_config
from spintui.algos.ddpg import DDPG
from spintui.algos.replay import ReplayBuffer
from spintui.algos.sac import SAC
from spintui.algos.td3 import TD3

torch.set_num_threads(1)

OK, WHY = native.available()
# Only a machine without a C compiler may skip these; where one exists the update must build.
needs_native = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")
AGENTS = {"sac": SAC, "td3": TD3, "ddpg": DDPG}


def make_agent(algo: str, update: str, env, **values):
    torch.manual_seed(0)
    cfg = make_config(algo, {"env": "Pendulum-v1", "update": update, **values})
    return AGENTS[algo](cfg, env.observation_space, env.action_space, torch.device("cpu"))


def replay_block(env, n_updates: int, batch: int = 100, seed: int = 0):
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    buffer = ReplayBuffer(obs_dim, act_dim, 10_000, torch.device("cpu"))
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    for _ in range(2000):
        buffer.store(rng.normal(size=obs_dim), rng.uniform(low, high), rng.normal(0, 0.1), rng.normal(size=obs_dim),
                     rng.random() < 0.1)
    torch.manual_seed(seed)
    return buffer.sample_block(n_updates, batch)


def tensors_of(agent) -> dict[str, torch.Tensor]:
    """Every tensor an update changes: parameters of all networks and both optimizers' states."""
    out = {}
    for name, module in agent.modules().items():
        for i, p in enumerate(module.parameters()):
            out[f"{name}.{i}"] = p.detach().clone()
    for name, opt in agent.optimizers().items():
        for i, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                out[f"{name}.state{i}.{key}"] = value.clone()
    if getattr(agent, "auto_alpha", False):
        out["log_alpha"] = agent.log_alpha.detach().clone()
    return out


def run_both(algo: str, env=None, n_updates: int = 4, prepare=None, **values):
    env = env or gym.make("Pendulum-v1")
    eager, compiled = make_agent(algo, "torch", env, **values), make_agent(algo, "native", env, **values)
    if prepare:
        prepare(eager)
        prepare(compiled)
    assert compiled.native and not eager.native
    start = tensors_of(eager)
    block = replay_block(env, n_updates)
    torch.manual_seed(1)
    stats_eager = eager.update(*block)
    torch.manual_seed(1)
    stats_compiled = compiled.update(*block)
    return start, (eager, stats_eager), (compiled, stats_compiled)


def assert_same_updates(start, eager_side, compiled_side):
    """Statistics and Adam's moments are smooth functions of the gradients and must agree closely.
    Parameters must agree too, except a few elements whose gradient is at rounding level: Adam's
    early steps turn any such gradient into a step of about lr (1e-3), in either direction."""
    (eager, stats_eager), (compiled, stats_compiled) = eager_side, compiled_side
    after_eager, after_compiled = tensors_of(eager), tensors_of(compiled)
    assert after_eager.keys() == after_compiled.keys()
    params_total = params_off = 0
    for key, value in after_eager.items():
        moved = (value - start.get(key, torch.zeros_like(value))).abs().max().item()
        assert moved > 0, f"{key} did not change: the comparison would be empty"
        diff = (value - after_compiled[key]).abs()
        if key.endswith(".step"):
            assert diff.max() == 0, key
        elif ".state" in key:  # exp_avg, exp_avg_sq
            assert diff.max() <= 5e-3 * value.abs().max(), f"{key}: differs by {diff.max():.3g}"
        else:
            params_total += value.numel()
            params_off += int((diff > 1e-4).sum())
            assert diff.max() <= 4 * 1e-3, f"{key}: differs by {diff.max():.3g}, more than rounding can explain"
    assert params_off <= 1e-3 * params_total, f"{params_off} of {params_total} parameters differ by more than 1e-4"
    assert stats_eager.keys() == stats_compiled.keys()
    for key, value in stats_eager.items():
        assert value.shape == stats_compiled[key].shape, key
        diff = (value - stats_compiled[key]).abs().max()
        assert diff <= 1e-4 * value.abs().max(), f"{key}: differs by {diff:.3g}"


@needs_native
@pytest.mark.parametrize("alpha", ["0.2", "auto"])
def test_sac_matches_the_eager_update(alpha):
    start, eager, compiled = run_both("sac", alpha=alpha)
    assert_same_updates(start, eager, compiled)
    if alpha == "auto":
        torch.testing.assert_close(compiled[0].alpha.reshape(-1), eager[0].alpha.reshape(-1))
        assert eager[0].alpha.item() != 1.0  # the temperature did move


@needs_native
def test_sac_log_std_clamp():
    """Half the log-stds start above the clamp at 2: their gradient must stop there, as torch.clamp's does."""
    def push_log_std_up(agent):
        with torch.no_grad():
            agent.actor.net.params[-1][1:] = 2.0  # output (mu | log_std); Pendulum has one action dim
    start, eager, compiled = run_both("sac", prepare=push_log_std_up)
    assert_same_updates(start, eager, compiled)


@needs_native
@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_deterministic_actor_updates_match_the_eager_update(algo):
    start, eager, compiled = run_both(algo, n_updates=5)
    assert_same_updates(start, eager, compiled)
    if algo == "td3":  # policy_delay 2: actor steps at updates 0, 2, 4
        assert eager[1]["LossPi"].shape == (3,)


@needs_native
def test_other_shapes_and_action_bounds():
    """Narrow asymmetric action bounds (TD3's smoothed target actions then often leave them and are
    clipped), three hidden layers, and widths on both sides of the C code's switch between BLAS and
    plain loops (16)."""
    shifted = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), np.float32(-0.3), np.float32(0.1))
    for algo in ("sac", "td3"):
        start, eager, compiled = run_both(algo, env=shifted, hidden_sizes="64,48,32")
        assert_same_updates(start, eager, compiled)
        start, eager, compiled = run_both(algo, hidden_sizes="8,300")
        assert_same_updates(start, eager, compiled)


@needs_native
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_multidimensional_actions(algo):
    import mujoco  # noqa: F401  (the test extra installs it: these tests run, never skip)
    env = gym.make("HalfCheetah-v5")  # 17-dim observations, 6-dim actions
    start, eager, compiled = run_both(algo, env=env)
    assert_same_updates(start, eager, compiled)


@needs_native
def test_updates_follow_replaced_optimizer_state():
    """Loading a checkpoint replaces the optimizers' state tensors; the compiled update must step those."""
    env = gym.make("Pendulum-v1")
    agent = make_agent("sac", "native", env)
    block = replay_block(env, 2)
    agent.update(*block)
    saved = {name: opt.state_dict() for name, opt in agent.optimizers().items()}
    fresh = make_agent("sac", "native", env)
    for name, opt in fresh.optimizers().items():
        opt.load_state_dict(saved[name])
    fresh.update(*block)
    steps = {float(s["step"]) for s in fresh.q_optimizer.state.values()}
    assert steps == {4.0}


def test_update_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert native.wanted("torch", cpu) is False
    assert native.wanted("auto", cuda) is False
    with pytest.raises(ValueError, match="runs on the CPU only; use --update auto or torch"):
        native.wanted("native", cuda)
    assert native.wanted("auto", cpu) is OK
    assert native.wanted("auto", cpu, hidden_sizes=(64,) * 7) is OK
    assert native.wanted("auto", cpu, hidden_sizes=(64,) * 8) is False  # more layers than the C code takes
    with pytest.raises(ValueError, match="at most 7 hidden layers"):
        native.wanted("native", cpu, hidden_sizes=(64,) * 8)


def test_no_compiler_falls_back_to_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_compiler", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached there either
    native._load.cache_clear()
    try:
        assert native.available() == (False, "no C compiler (cc, gcc or clang) on PATH")
        env = gym.make("Pendulum-v1")
        assert make_agent("sac", "auto", env).native is False
        with pytest.raises(ValueError, match="no C compiler"):
            make_agent("sac", "native", env)
    finally:
        native._load.cache_clear()


def test_cli_refuses_update_native_without_a_compiler_before_creating_a_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env.update(PATH=str(tmp_path / "no-bin"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "spintui.tui.cli", "train", "sac", "--env", "Pendulum-v1",
                          "--update", "native", "--headless", "--steps", "100", "--runs-dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "spintui: error: --update native is not available: no C compiler (cc, gcc or clang) on PATH; "
        "use --update auto or torch"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_compiled_update_builds_wherever_a_c_compiler_exists():
    if native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    assert OK, WHY


# --------------------------------------------------------------------------------------------------
# The checked interface: deliberate defects in either description of the memory layout


def swapped(layout, i, j):
    out = list(layout)
    out[i], out[j] = out[j], out[i]
    return tuple(out)


@needs_native
def test_layout_check_catches_defects_on_the_python_side():
    import ctypes

    lib, _ = native._load()
    assert native.check_layout(lib) == ""
    reordered = native.structure("Reordered", swapped(native.BLOCK_LAYOUT, 4, 5))  # obs <-> act
    why = native.check_layout(lib, structs=(("Block", 1, reordered),))
    assert why == "Block field 4 is obs at offset 16 (8 bytes) in C, act at offset 16 (8 bytes) in native.py"
    resized = tuple((name, ctypes.c_double) if name == "polyak" else (name, t) for name, t in native.BLOCK_LAYOUT)
    why = native.check_layout(lib, structs=(("Block", 1, native.structure("Resized", resized)),))
    assert why.startswith("Block field 12 is polyak at offset 80 (4 bytes) in C, polyak at offset 80 (8 bytes)")
    shorter = native.structure("Shorter", native.NET_LAYOUT[:-1])
    assert native.check_layout(lib, structs=(("Net", 0, shorter),)) == "Net has 19 fields in C, 18 in native.py"
    assert native.check_layout(lib, version=native.ABI_VERSION + 1) == (
        f"layout version {native.ABI_VERSION} in the library, {native.ABI_VERSION + 1} in native.py")


@needs_native
def test_a_reordered_c_struct_falls_back_to_torch_with_the_reason(monkeypatch, tmp_path):
    """Build the C update with two fields of Block swapped: it must not be used, and the run says why."""
    source = native.SOURCE.read_text()
    fields = "    float polyak;\n    int policy_delay;"
    assert fields in source
    broken = tmp_path / "offpolicy_update.c"
    broken.write_text(source.replace(fields, "    int policy_delay;\n    float polyak;"))
    monkeypatch.setattr(native, "SOURCE", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    native._load.cache_clear()
    try:
        ok, why = native.available()
        assert not ok
        assert why == ("its memory layout does not match: Block field 12 is polyak at offset 84 (4 bytes) "
                       "in C, polyak at offset 80 (4 bytes) in native.py")
        env = gym.make("Pendulum-v1")
        agent = make_agent("sac", "auto", env)
        assert agent.update_path.describe() == f"PyTorch update (compiled update unavailable: {why})"
        with pytest.raises(ValueError, match="memory layout does not match"):
            make_agent("td3", "native", env)
    finally:
        native._load.cache_clear()


@needs_native
def test_a_perturbed_loss_fails_the_native_equality_test(monkeypatch):
    """The eager update takes its losses from offpolicy_losses: perturb the actor's and the C update
    (which still has the true one) must no longer match."""
    from spintui.algos import offpolicy_losses

    real = offpolicy_losses.td3_compute_loss_pi
    monkeypatch.setattr(offpolicy_losses, "td3_compute_loss_pi", lambda *args: 1.05 * real(*args))
    start, eager, compiled = run_both("td3", n_updates=5)
    with pytest.raises(AssertionError):
        assert_same_updates(start, eager, compiled)
