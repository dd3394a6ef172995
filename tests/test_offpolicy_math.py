"""The off-policy math written once: each loss alone against values worked out by hand, the functional
step (uncompiled and compiled) against the eager update, and the choice of update path."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from spintui.algos import offpolicy_losses as losses
from spintui.algos import offpolicy_paths
from spintui.algos.offpolicy_paths import CompiledUpdate, UpdatePath, choose
from test_native_update import assert_same_updates, make_agent, replay_block, tensors_of

torch.set_num_threads(1)
T = torch.tensor


# --------------------------------------------------------------------------------------------------
# Each loss alone, with linear networks (no hidden layer) whose outputs are easy to follow by hand.
# Observation and action are one number each; one sample: o = 1, a = 0.5, r = 1, o' = 2, gamma (1 - d) = 0.9.


def critics(rows, biases):
    """Stacked linear critics Q_i(o, a) = w_o o + w_a a + b, as QEnsemble stores them: W (n, 2, 1), b (n, 1, 1)."""
    return [T(rows).reshape(len(rows), 2, 1), T(biases).reshape(len(rows), 1, 1)]


def linear_policy(weights, biases):
    """A policy net without hidden layers: out = o W + b, W (1, outputs)."""
    return [T([weights]), T(biases)]


O, A, R, O2, DISC = T([[1.0]]), T([[0.5]]), T([1.0]), T([[2.0]]), T([0.9])
Q = critics([[1.0, 2.0], [-1.0, 1.0]], [0.5, 0.0])  # Q1 = o + 2a + 0.5, Q2 = -o + a
UNIT = (T([1.0]), T([0.0]))  # action scale and center
LOG_2PI = math.log(2 * math.pi)


def test_sac_loss_q_by_hand():
    q_targ = critics([[1.0, 1.0], [2.0, 0.0]], [0.0, 0.0])  # Q_targ1 = o + a, Q_targ2 = 2o
    pi = linear_policy([0.0, 0.0], [0.0, 0.0])  # mu = 0, log std = 0
    loss, q = losses.sac_compute_loss_q(Q, q_targ, pi, O, A, R, O2, DISC, T([[0.0]]), 0.2, *UNIT)
    # eps = 0: a' = tanh(0) = 0, log pi(a'|o') = log N(0; 0, 1) - log(1 - tanh(0)^2) = -log(2 pi) / 2
    logp_a2 = -0.5 * LOG_2PI
    backup = 1 + 0.9 * (min(2 + 0, 2 * 2) - 0.2 * logp_a2)
    q1, q2 = 1 + 2 * 0.5 + 0.5, -1 + 0.5
    assert q.tolist() == [[q1], [q2]]
    assert loss.item() == pytest.approx((q1 - backup) ** 2 + (q2 - backup) ** 2, rel=1e-6)
    # The backup is a target: no gradient reaches the policy or the target critics through it.
    pi_leaf = [p.clone().requires_grad_() for p in pi]
    loss, _ = losses.sac_compute_loss_q(Q, q_targ, pi_leaf, O, A, R, O2, DISC, T([[0.0]]), 0.2, *UNIT)
    assert not loss.requires_grad


def test_sac_loss_pi_and_alpha_by_hand():
    pi = linear_policy([0.5, 0.0], [0.0, 0.0])  # mu = o / 2, log std = 0
    loss, logp = losses.sac_compute_loss_pi(pi, Q, O, T([[0.5]]), 0.2, *UNIT)
    u = 0.5 + 1.0 * 0.5  # mu + std eps
    logp_hand = -0.5 * (u - 0.5) ** 2 - 0.5 * LOG_2PI - math.log(1 - math.tanh(u) ** 2)
    action = math.tanh(u)
    q_min = min(1 + 2 * action + 0.5, -1 + action)
    assert logp.item() == pytest.approx(logp_hand, rel=1e-5)
    assert loss.item() == pytest.approx(0.2 * logp_hand - q_min, rel=1e-5)

    log_alpha = T(0.5, requires_grad=True)
    loss_alpha = losses.sac_compute_loss_alpha(log_alpha, T([-1.0, -3.0]), target_entropy=-1.0)
    assert loss_alpha.item() == pytest.approx(-0.5 * ((-1 - 1) + (-3 - 1)) / 2)
    (grad,) = torch.autograd.grad(loss_alpha, log_alpha)
    assert grad.item() == pytest.approx(3.0)  # alpha falls while the entropy is above the target


def test_td3_and_ddpg_loss_q_by_hand():
    q_targ = critics([[1.0, 1.0], [2.0, -1.0]], [0.0, 0.0])  # Q_targ1 = o + a, Q_targ2 = 2o - a
    pi_targ = linear_policy([0.5], [0.0])  # mu_targ(o) = 2 tanh(o / 2): actions in [-2, 2]
    bounds = (T([2.0]), T([0.0]))
    loss, _ = losses.td3_compute_loss_q(Q, q_targ, pi_targ, O, A, R, O2, DISC, T([[0.6]]), *bounds)
    a2 = min(2 * math.tanh(1.0) + 0.6, 2.0)  # smoothed, then clipped to the bounds
    backup = 1 + 0.9 * min(2 + a2, 2 * 2 - a2)
    assert loss.item() == pytest.approx((2.5 - backup) ** 2 + (-0.5 - backup) ** 2, rel=1e-6)

    one = [p[:1] for p in Q]
    loss, q = losses.ddpg_compute_loss_q(one, [p[:1] for p in q_targ], pi_targ, O, A, R, O2, DISC, *bounds)
    backup = 1 + 0.9 * (2 + 2 * math.tanh(1.0))  # no smoothing, one critic
    assert q.shape == (1, 1)
    assert loss.item() == pytest.approx((2.5 - backup) ** 2, rel=1e-6)


def test_td3_loss_pi_follows_the_first_critic_only():
    pi = linear_policy([0.5], [0.0])
    loss = losses.td3_compute_loss_pi(pi, Q, O, T([2.0]), T([0.0]))
    action = 2 * math.tanh(0.5)
    assert loss.item() == pytest.approx(-(1 + 2 * action + 0.5), rel=1e-6)  # Q1, though Q2 is smaller
    assert losses.ddpg_compute_loss_pi is losses.td3_compute_loss_pi


# --------------------------------------------------------------------------------------------------
# The functional step against the eager update, from the same networks and draws


def functional_agent(algo: str, env, compiled: CompiledUpdate | None = None, **values):
    agent = make_agent(algo, "torch", env, **values)
    agent.compiled = compiled or CompiledUpdate("sac" if algo == "sac" else "td3", agent, torch.device("cpu"),
                                                compile=False)
    agent.compiled.agent = agent
    return agent


def run_pair(algo: str, second, n_updates: int = 4, **values):
    env = gym.make("Pendulum-v1")
    eager = make_agent(algo, "torch", env, **values)
    start = tensors_of(eager)
    block = replay_block(env, n_updates)
    torch.manual_seed(1)
    stats_eager = eager.update(*block)
    torch.manual_seed(1)
    stats_second = second.update(*block)
    return start, (eager, stats_eager), (second, stats_second)


@pytest.mark.parametrize("algo, values", [("sac", {}), ("sac", {"alpha": "auto"}), ("td3", {}), ("ddpg", {})])
def test_functional_step_matches_the_eager_update(algo, values):
    agent = functional_agent(algo, gym.make("Pendulum-v1"), **values)
    start, eager, functional = run_pair(algo, agent, n_updates=5, **values)
    assert_same_updates(start, eager, functional)


def test_a_perturbed_loss_fails_the_equality_test(monkeypatch):
    """The functional step calls the losses through this module: perturb one and the comparison must fail."""
    real = losses.sac_compute_loss_pi
    monkeypatch.setattr(losses, "sac_compute_loss_pi", lambda *args: (1.02 * real(*args)[0], real(*args)[1]))
    eager_env = gym.make("Pendulum-v1")
    agent = functional_agent("sac", eager_env)
    start, eager, functional = run_pair("sac", agent)
    monkeypatch.undo()  # the eager side ran perturbed too; rerun it with the true loss
    start, eager, _ = run_pair("sac", functional_agent("sac", eager_env))
    with pytest.raises(AssertionError):
        assert_same_updates(start, eager, functional)


# --------------------------------------------------------------------------------------------------
# The compiled step (torch.compile on the CPU here): one compile per algorithm for the whole module


@pytest.fixture(scope="module")
def compiled_agents():
    env = gym.make("Pendulum-v1")
    return {algo: make_agent(algo, "compile", env, **values)
            for algo, values in (("sac", {"alpha": "auto"}), ("td3", {}))}


@pytest.mark.parametrize("algo, values", [("sac", {"alpha": "auto"}), ("td3", {})])
def test_compiled_step_matches_the_eager_update(compiled_agents, algo, values):
    compiled = compiled_agents[algo]
    assert compiled.update_path.name == "compile" and compiled.update_path.compile_seconds > 0
    assert "torch.compile update (compiled in" in compiled.update_path.describe()
    fresh = make_agent(algo, "torch", gym.make("Pendulum-v1"), **values)  # the same initial networks
    for name, module in fresh.modules().items():
        for mine, theirs in zip(compiled.modules()[name].parameters(), module.parameters()):
            assert torch.equal(mine, theirs)
    start, eager, compiled_side = run_pair(algo, compiled, n_updates=5, **values)
    assert_same_updates(start, eager, compiled_side)


# --------------------------------------------------------------------------------------------------
# Which path runs


def test_update_path_choice(monkeypatch):
    from spintui.algos import native

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose("torch", cpu) == UpdatePath("torch")
    assert choose("compile", cpu).name == "compile"
    native_ok, why = native.available()
    assert choose("auto", cpu).name == ("native" if native_ok else "torch")
    triton = offpolicy_paths.compile_available(cuda)[0]
    assert choose("auto", cuda) == (UpdatePath("compile") if triton else
                                    UpdatePath("torch", "torch.compile on CUDA needs triton"))
    monkeypatch.setattr(offpolicy_paths.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="--update compile is not available: torch.compile on the CPU needs a C"):
        choose("compile", cpu)


def test_cli_refuses_update_compile_without_a_cxx_compiler_before_creating_a_run(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    env.update(PATH=str(tmp_path / "no-bin"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "spintui.tui.cli", "train", "td3", "--env", "Pendulum-v1",
                          "--update", "compile", "--headless", "--steps", "100", "--runs-dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "spintui: error: --update compile is not available: torch.compile on the CPU needs a C++ compiler "
        "(g++, c++ or clang++); use --update auto or torch"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
