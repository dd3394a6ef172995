"""DDPG, TD3 and SAC: learning on Pendulum-v1, gymnasium bootstrapping, run store records,
checkpoints and `spintui eval`, clean stops, and the CLI end to end through the real subprocess."""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spintui.algos import native, offpolicy, offpolicy_nets
from spintui.algos.config import config_to_dict, make_config
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest, request_stop

torch.set_num_threads(1)

THRESHOLD = -300.0
BUDGET = 15_000


def new_run(tmp_path: Path, algo: str, **values) -> tuple:
    cfg = make_config(algo, {"env": "Pendulum-v1", "threads": 1, **values})
    run_dir = create_run(tmp_path, kind="train", algo=algo, env=cfg.env, seed=cfg.seed, config=config_to_dict(cfg))
    return cfg, run_dir


def records(run_dir: Path, kind: str) -> list[dict]:
    out = []
    for line in RunPaths(run_dir).metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == kind:
            out.append(rec)
    return out


class StopAtThreshold(RunWriter):
    """A real RunWriter that asks for a clean stop once the deterministic test return is good enough,
    so a learning test costs only the steps it needs (the budget is still 15,000 steps)."""

    def epoch(self, epoch, step, stats):
        super().epoch(epoch, step, stats)
        if stats.get("AverageTestEpRet", -np.inf) >= THRESHOLD:
            self.request_stop()


def best_test_return(tmp_path: Path, algo: str, seed: int, budget: int = BUDGET,
                     **values) -> tuple[float, int, str]:
    """(best deterministic test return, steps run, the run's first event: it names the update path)"""
    # start_steps is shortened from Spinning Up's 10,000 to 1,000 so that the policy acts within the
    # 15,000-step budget; tests run every 1,000 steps (10 deterministic episodes each).
    cfg, run_dir = new_run(tmp_path, algo, seed=seed, steps=budget, start_steps=1000, steps_per_epoch=1000, **values)
    writer = StopAtThreshold(run_dir, heartbeat=False)
    importlib.import_module(f"spintui.algos.{algo}").train(cfg, writer)
    writer.close()
    epochs = records(run_dir, "epoch")
    best = max(e["stats"]["AverageTestEpRet"] for e in epochs)
    return best, epochs[-1]["step"], records(run_dir, "event")[0]["message"]


# --------------------------------------------------------------------------------------------------
# Learning


@pytest.mark.slow
@pytest.mark.parametrize("algo, update", [("sac", "auto"), ("td3", "auto"), ("ddpg", "auto"), ("sac", "torch")])
def test_learns_pendulum_within_budget(tmp_path, algo, update):
    """auto is the compiled C update where a C compiler exists (CI), torch the eager reference."""
    best, steps, first_event = best_test_return(tmp_path, algo, seed=0, update=update)
    assert best >= THRESHOLD, f"{algo} ({update} update) reached only {best:.1f} in {steps} steps"
    ran = "compiled C update" if update == "auto" and native._compiler() is not None else "PyTorch update"
    assert ran in first_event, first_event
    assert steps <= BUDGET


@pytest.mark.slow
def test_a_sign_error_in_the_actor_loss_fails_the_learning_threshold(tmp_path, monkeypatch):
    """The learning test with DDPG's actor minimising Q instead of maximising it must fail.

    This breaks the eager update; the compiled one is held to it by tests/test_native_update.py.

    To keep CI cheap this runs 8,000 steps, twice what the correct DDPG needs with this seed
    (it passes the threshold at 4,000), rather than the whole 15,000-step budget.
    """
    losses = importlib.import_module("spintui.algos.offpolicy_losses")  # DDPG's update is TD3's
    real_loss_pi = losses.td3_compute_loss_pi
    monkeypatch.setattr(losses, "td3_compute_loss_pi", lambda *args: -real_loss_pi(*args))
    best, steps, _ = best_test_return(tmp_path, "ddpg", seed=0, budget=8000, update="torch")
    assert steps == 8000
    assert best < THRESHOLD


# --------------------------------------------------------------------------------------------------
# gymnasium semantics


class RecordingBuffer(offpolicy.ReplayBuffer):
    last = None

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        RecordingBuffer.last = self


def stored_transitions(monkeypatch, tmp_path, env_id: str, steps: int, **values):
    monkeypatch.setattr(offpolicy, "ReplayBuffer", RecordingBuffer)
    cfg = make_config("sac", {"env": env_id, "threads": 1, "steps": steps, "update_after": 10 * steps,
                              "num_test_episodes": 1, "hidden_sizes": "32,32", "replay_size": 10_000, **values})
    run_dir = create_run(tmp_path, kind="train", algo="sac", env=env_id, seed=0, config=config_to_dict(cfg))
    with RunWriter(run_dir, heartbeat=False) as writer:
        importlib.import_module("spintui.algos.sac").train(cfg, writer)
    buf = RecordingBuffer.last
    buf.flush()
    data = buf.data[:buf.count].numpy()
    o, a = buf.obs_dim, buf.act_dim
    lengths = [e["length"] for e in records(run_dir, "episode") if not e["test"]]
    return data[:, :o], data[:, o + a + 1:2 * o + a + 1], data[:, -1], lengths


def test_truncation_and_max_ep_len_bootstrap(monkeypatch, tmp_path):
    # Pendulum never terminates: its 200-step TimeLimit and a max_ep_len of 70 both truncate.
    obs, next_obs, done, lengths = stored_transitions(monkeypatch, tmp_path, "Pendulum-v1", 500, max_ep_len=70)
    assert lengths[:7] == [70] * 7
    assert len(done) == 500 and not done.any()
    # The stored next_obs of a cut-off step is the real last observation, not the next reset.
    ends = np.cumsum(lengths) - 1
    inside = np.setdiff1d(np.arange(499), ends)
    assert not np.isclose(next_obs[ends], obs[ends + 1]).all(axis=1).any()
    assert np.array_equal(next_obs[inside], obs[inside + 1])


def test_termination_does_not_bootstrap(monkeypatch, tmp_path):
    # Random actions make Hopper fall (terminated) within tens of steps.
    import mujoco  # noqa: F401  (the test extra installs it: these tests run, never skip)
    _, _, done, lengths = stored_transitions(monkeypatch, tmp_path, "Hopper-v5", 300, steps_per_epoch=300)
    ends = np.cumsum(lengths) - 1
    assert len(lengths) >= 3
    assert set(np.flatnonzero(done)) == set(ends)


def test_backup_uses_done_only_for_termination():
    """LossQ equals mean (Q - r)^2 with d=1 and bootstraps through the target networks with d=0."""
    import gymnasium as gym

    from spintui.algos.ddpg import DDPG

    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    cfg = make_config("ddpg", {"env": "Pendulum-v1", "hidden_sizes": "32,32"})
    agent = DDPG(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    o, a, r, o2 = torch.randn(1, 8, 3), torch.rand(1, 8, 1) * 4 - 2, torch.randn(1, 8), torch.randn(1, 8, 3)
    with torch.no_grad():
        q = agent.critic(o[0], a[0])[0]
        q_next = agent.critic_targ(o2[0], agent.actor_targ(o2[0]))[0]
    twin = copy.deepcopy(agent)
    terminal = agent.update(o, a, r, o2, torch.ones(1, 8))["LossQ"][0]
    assert torch.allclose(terminal, ((q - r[0]) ** 2).mean(), atol=1e-5)
    bootstrapped = twin.update(o, a, r, o2, torch.zeros(1, 8))["LossQ"][0]
    assert torch.allclose(bootstrapped, ((q - (r[0] + cfg.gamma * q_next)) ** 2).mean(), atol=1e-5)


def _linear_stack(weights, biases, output_activation=None) -> nn.Sequential:
    """Spinning Up's mlp(): nn.Linear layers with ReLU between them, loaded with given (in, out) weights."""
    layers = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        linear = nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(w.T)
            linear.bias.copy_(b.reshape(-1))
        layers += [linear, nn.ReLU()] if i < len(weights) - 1 else [linear]
    if output_activation is not None:
        layers.append(output_activation)
    return nn.Sequential(*layers)


def test_stacked_critics_match_separate_linear_networks():
    """QEnsemble member i computes what Spinning Up's MLPQFunction with the same weights computes,
    and its gradients (weights and action input) are the same too."""
    torch.manual_seed(0)
    ensemble = offpolicy_nets.QEnsemble(2, 3, 2, (32, 16))
    obs, act = torch.randn(10, 3), torch.randn(10, 2, requires_grad=True)
    q = ensemble(obs, act)
    assert q.shape == (2, 10)
    upstream = torch.randn(2, 10)
    grads = torch.autograd.grad((q * upstream).sum(), [act, *ensemble.parameters()])
    params = list(ensemble.parameters())
    act_grad = torch.zeros_like(act)
    for i in range(2):
        reference = _linear_stack([w[i] for w in params[0::2]], [b[i] for b in params[1::2]])
        act_i = act.detach().requires_grad_(True)
        q_i = reference(torch.cat([obs, act_i], dim=-1)).squeeze(-1)
        assert torch.allclose(q[i], q_i, atol=1e-5)
        ref_grads = torch.autograd.grad((q_i * upstream[i]).sum(), [act_i, *reference.parameters()])
        act_grad += ref_grads[0]
        linears = [m for m in reference if isinstance(m, nn.Linear)]
        for layer, linear in enumerate(linears):
            w_grad, b_grad = ref_grads[1 + 2 * layer], ref_grads[2 + 2 * layer]
            assert torch.allclose(grads[1 + 2 * layer][i], w_grad.T, atol=1e-5)
            assert torch.allclose(grads[2 + 2 * layer][i].reshape(-1), b_grad, atol=1e-5)
    assert torch.allclose(grads[0], act_grad, atol=1e-5)


def test_mlp_matches_linear_layers():
    torch.manual_seed(0)
    mlp = offpolicy_nets.MLP([3, 32, 16, 2], output_activation=torch.tanh)
    params = list(mlp.parameters())
    reference = _linear_stack(params[0::2], params[1::2], nn.Tanh())
    x = torch.randn(10, 3)
    y, y_ref = mlp(x), reference(x)
    assert torch.allclose(y, y_ref, atol=1e-6)
    upstream = torch.randn(10, 2)
    grads = torch.autograd.grad((y * upstream).sum(), params)
    ref_grads = torch.autograd.grad((y_ref * upstream).sum(), list(reference.parameters()))
    for g, g_ref in zip(grads, ref_grads):
        assert torch.allclose(g, g_ref.T if g.dim() == 2 else g_ref, atol=1e-5)


def test_minimize_is_an_adam_step():
    """offpolicy_nets.minimize gives the parameters and optimizer state of zero_grad/backward/step."""
    torch.manual_seed(0)
    nets = [offpolicy_nets.QEnsemble(2, 3, 1, (16, 16)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [offpolicy_nets.adam(net.parameters(), 1e-2) for net in nets]
    for _ in range(4):
        obs, act = torch.randn(8, 3), torch.randn(8, 1)
        loss = nets[0](obs, act).square().mean()
        opts[0].zero_grad()
        loss.backward()
        opts[0].step()
        offpolicy_nets.minimize(nets[1](obs, act).square().mean(), opts[1])
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6) and b.grad is None
    assert opts[0].state_dict()["state"][0]["step"] == opts[1].state_dict()["state"][0]["step"] == 4


def test_discrete_action_space_is_refused_by_train(tmp_path):
    from spintui.algos import sac

    cfg = make_config("sac", {"env": "CartPole-v1"})
    run_dir = create_run(tmp_path, kind="train", algo="sac", env="CartPole-v1", seed=0, config=config_to_dict(cfg))
    with RunWriter(run_dir, heartbeat=False) as writer, pytest.raises(ValueError) as err:
        sac.train(cfg, writer)
    assert str(err.value) == "sac needs a continuous (Box) action space; CartPole-v1 has Discrete(2); try ppo"


def test_same_seed_same_run(tmp_path):
    returns = []
    for i in range(2):
        cfg, run_dir = new_run(tmp_path / str(i), "td3", steps=500, start_steps=250, update_after=100,
                               steps_per_epoch=500, num_test_episodes=1, hidden_sizes="32,32", seed=3)
        with RunWriter(run_dir, heartbeat=False) as writer:
            importlib.import_module("spintui.algos.td3").train(cfg, writer)
        returns.append([e["ret"] for e in records(run_dir, "episode")])
    assert returns[0] == returns[1] and len(returns[0]) == 3


# --------------------------------------------------------------------------------------------------
# Run store, checkpoints, eval, stop


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """One short run of each algorithm (and SAC with --alpha auto): 600 steps, two epochs, small nets."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for algo, extra in [("sac", {}), ("td3", {}), ("ddpg", {}), ("sac", {"alpha": "auto"})]:
        cfg, run_dir = new_run(root, algo, steps=600, start_steps=200, update_after=100, steps_per_epoch=300,
                               num_test_episodes=2, hidden_sizes="64,64", **extra)
        with RunWriter(run_dir, heartbeat=False) as writer:
            importlib.import_module(f"spintui.algos.{algo}").train(cfg, writer)
        out[algo + ("-auto" if extra else "")] = run_dir
    return out


COMMON_COLUMNS = {"AverageEpRet", "StdEpRet", "MaxEpRet", "MinEpRet", "EpLen", "AverageTestEpRet", "StdTestEpRet",
                  "MaxTestEpRet", "MinTestEpRet", "TestEpLen", "TotalEnvInteracts", "LossPi", "LossQ", "Time",
                  "StepsPerSec", "TimeEnv", "TimeAct", "TimeUpdate", "TimeLog", "TimeTest"}


@pytest.mark.parametrize("algo, columns", [
    ("sac", {"AverageQ1Vals", "AverageQ2Vals", "MaxQ1Vals", "AverageLogPi", "Alpha"}),
    ("td3", {"AverageQ1Vals", "AverageQ2Vals", "StdQ2Vals"}),
    ("ddpg", {"AverageQVals", "MinQVals"}),
])
def test_run_store_records(short_runs, algo, columns):
    run_dir = short_runs[algo]
    epochs = records(run_dir, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2] and [e["step"] for e in epochs] == [300, 600]
    missing = (COMMON_COLUMNS | columns) - set(epochs[-1]["stats"])
    assert not missing
    assert epochs[-1]["stats"]["TotalEnvInteracts"] == 600
    header = RunPaths(run_dir).progress.read_text().splitlines()[0].split("\t")
    assert header[0] == "Epoch" and {"AverageTestEpRet", "TotalEnvInteracts", "LossQ"} <= set(header)
    episodes = records(run_dir, "episode")
    assert [e["length"] for e in episodes if not e["test"]] == [200, 200, 200]
    assert sum(e["test"] for e in episodes) == 4
    series = RunReader(run_dir).poll().scalars
    assert {"LossQ", "LossPi"} <= set(series)
    assert len(series["LossQ"]) == 10  # one point per update block: steps 100, 150, ..., 550
    progress = read_manifest(run_dir)["progress"]
    assert progress["step"] == 600 and progress["total_steps"] == 600 and "steps_per_sec" in progress


def test_alpha_auto_learns_the_temperature(short_runs):
    fixed = records(short_runs["sac"], "epoch")[-1]["stats"]["Alpha"]
    learned = [e["stats"]["Alpha"] for e in records(short_runs["sac-auto"], "epoch")]
    assert fixed == pytest.approx(0.2)
    assert learned[0] != pytest.approx(1.0) and learned[1] != pytest.approx(learned[0])


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_checkpoint_round_trip_and_eval(short_runs, algo):
    import gymnasium as gym

    from spintui.algos.core import load_checkpoint
    from spintui.algos.evaluate import evaluate

    run_dir = short_runs[algo]
    ckpt = load_checkpoint(run_dir)  # weights_only=True inside
    assert ckpt["step"] == 600 and ckpt["epoch"] == 2 and ckpt["algo"] == algo
    assert {"actor", "critic", "critic_targ"} <= set(ckpt["modules"]) and {"pi", "q"} <= set(ckpt["optimizers"])
    assert ckpt["config"]["env"] == "Pendulum-v1"

    # The restored policy is the trained agent's deterministic policy.
    module = importlib.import_module(f"spintui.algos.{algo}")
    env = gym.make("Pendulum-v1")
    cfg = make_config(algo, ckpt["config"])
    agent = getattr(module, algo.upper())(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    agent.actor.load_state_dict(ckpt["modules"]["actor"])
    policy = module.load_policy(ckpt, env, "cpu")
    obs = np.array([0.3, -0.9, 1.5], dtype=np.float32)
    assert np.allclose(policy(obs), agent.act(obs, deterministic=True))
    assert np.all(np.abs(policy(obs)) <= 2.0)

    first = evaluate(run_dir, episodes=2, seed=5)
    again = evaluate(run_dir, episodes=2, seed=5)
    assert first["returns"] == again["returns"] and first["lengths"] == [200, 200]
    assert first["mean_return"] == pytest.approx(np.mean(first["returns"]))


def test_stop_request_ends_with_checkpoint(tmp_path):
    from spintui.algos.core import load_checkpoint
    from spintui.algos.launch import train_run

    cfg, run_dir = new_run(tmp_path, "sac", steps=200_000, start_steps=200_000, update_after=150_000,
                           num_test_episodes=1)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("status", train_run(run_dir)))
    worker.start()
    deadline = time.time() + 60
    metrics = RunPaths(run_dir).metrics
    while time.time() < deadline and not (metrics.exists() and '"episode"' in metrics.read_text()):
        time.sleep(0.1)
    request_stop(run_dir)  # what a viewer does: control/stop, noticed on the next heartbeat
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert result["status"] == "stopped" and read_manifest(run_dir)["status"] == "stopped"
    ckpt = load_checkpoint(run_dir)
    assert 200 <= ckpt["step"] < 200_000


# --------------------------------------------------------------------------------------------------
# CLI end to end (real trainer subprocess)


def spintui(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPINTUI_RUNS_DIR=str(cwd / "runs"))
    return subprocess.run([sys.executable, "-m", "spintui.tui.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_train_then_eval(tmp_path):
    out = spintui("train", "sac", "--env", "Pendulum-v1", "--steps", "600", "--headless", "--name", "e2e",
                  "--threads", "1", "--start-steps", "200", "--update-after", "100", "--steps-per-epoch", "300",
                  "--num-test-episodes", "2", "--hidden-sizes", "64,64", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "runs" / "e2e"
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "finished" and manifest["progress"]["step"] == 600
    assert manifest["config"]["start_steps"] == 200
    assert RunPaths(run_dir).latest_checkpoint.is_file()

    out = spintui("eval", "e2e", "--episodes", "2", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["algo"] == "sac" and len(result["returns"]) == 2 and result["checkpoint_step"] == 600

    out = spintui("eval", "latest", "--episodes", "1", cwd=tmp_path)
    assert out.returncode == 0 and "\u00b1" in out.stdout and "e2e" in out.stdout


def test_cli_eval_without_checkpoint_is_one_line(tmp_path):
    create_run(tmp_path / "runs", kind="train", name="empty", algo="sac", env="Pendulum-v1", seed=0,
               config=config_to_dict(make_config("sac", {"env": "Pendulum-v1"})))
    out = spintui("eval", "empty", cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no checkpoint" in lines[0] and "Traceback" not in out.stderr
