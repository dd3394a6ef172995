"""Block-sparse hidden layers in the six algorithms (`--block-density D --block-size B`): which layers
become BlockSparseLinear, their layouts (from the seed, in the checkpoint), gradients, refusals,
the compiled update's fallback, eval, resume, the header, and learning with sparse networks."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from spintui.algos import actor_critic
from spintui.algos.config import SPARSE_BLOCK_SIZES, config_to_dict, make_config
from spintui.algos.core import count_params, load_checkpoint
from spintui.algos.launch import train_run
from spintui.algos.offpolicy_nets import MLP, QEnsemble
from spintui.algos.sparse_layers import SparseLinear, SparseSpec, covering_layout, sparse_spec
from spintui.errors import ConfigError
from spintui.kernels import BLOCK_SIZES, BlockSparseLinear
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run
from stopping import stopped_after_first_epoch

torch.set_num_threads(1)

OFF_POLICY = {"env": "Pendulum-v1", "threads": 1, "steps": 400, "steps_per_epoch": 200, "start_steps": 100,
              "update_after": 100, "num_test_episodes": 1, "hidden_sizes": "64,64", "max_ep_len": 100,
              "replay_size": 5000, "block_density": 0.5, "block_size": 16}
ON_POLICY = {"env": "CartPole-v1", "device": "cpu", "threads": 1, "steps": 400, "steps_per_epoch": 200,
             "hidden_sizes": "64,64", "train_v_iters": 5, "block_density": 0.5, "block_size": 16}
PENDULUM = gym.make("Pendulum-v1")


def new_run(root: Path, algo: str, name: str, **values) -> Path:
    base = OFF_POLICY if algo in ("ddpg", "td3", "sac") else ON_POLICY
    cfg = make_config(algo, {**base, **values})
    return create_run(root, kind="train", name=name, algo=algo, env=cfg.env, seed=cfg.seed, config=config_to_dict(cfg))


def events(run_dir: Path) -> list[str]:
    lines = RunPaths(run_dir).metrics.read_text().splitlines()
    return [r["message"] for r in map(json.loads, lines) if r.get("kind") == "event"]


def off_policy_agent(algo: str, **values):
    cfg = make_config(algo, {**OFF_POLICY, **values})
    module = importlib.import_module(f"spintui.algos.{algo}")
    return getattr(module, algo.upper())(cfg, PENDULUM.observation_space, PENDULUM.action_space, torch.device("cpu"))


def masks(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if "block_mask" in k}


# --------------------------------------------------------------------------------------------------
# Which layers are block-sparse


@pytest.mark.parametrize("algo", ["vpg", "trpo", "ppo"])
def test_on_policy_hidden_layers_are_block_sparse_and_the_others_dense(algo):
    cfg = make_config(algo, {**ON_POLICY, "hidden_sizes": "64,64,64", "block_density": 0.25})
    ac = actor_critic.build_actor_critic(gym.make("CartPole-v1"), cfg.hidden_sizes, "cpu", sparse_spec(cfg))
    for net in (ac.pi.logits_net, ac.v):
        linears = [m for m in net if isinstance(m, (nn.Linear, BlockSparseLinear))]
        assert [type(m) for m in linears] == [nn.Linear, SparseLinear, SparseLinear, nn.Linear]
        for layer in linears[1:3]:
            assert layer.layout.block == 16 and layer.layout.shape == (64, 64)
            assert layer.layout.density == pytest.approx(0.25)
            assert layer.weight.shape == (4, 16, 16)
    # pi and v, and the two layers of each, have layouts of their own
    layouts = [m.layout.mask for net in (ac.pi.logits_net, ac.v) for m in net if isinstance(m, SparseLinear)]
    assert len({tuple(m.flatten().tolist()) for m in layouts}) == 4


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_off_policy_hidden_layers_are_block_sparse_and_the_others_dense(algo):
    agent = off_policy_agent(algo, hidden_sizes="64,64", block_density=0.5, block_size=32)
    for net in (agent.actor.pi if algo != "sac" else agent.actor.net, agent.critic):
        assert net.layouts[0] is None and net.layouts[2] is None  # input and output layers
        layout = net.layouts[1]
        assert layout.shape == (64, 64) and layout.block == 32 and layout.nnz == 2
    members = agent.critic.n
    assert agent.critic.params[2].shape == (members, 2, 32, 32)  # the critics' blocks, stacked
    assert agent.critic.params[0].shape == (members, 3 + 1, 64)  # dense input layer, stored (in, out)
    assert not agent.native  # the compiled update takes dense layers only


@pytest.mark.parametrize("algo", ["vpg", "trpo", "ppo", "ddpg", "td3", "sac"])
def test_without_the_options_every_network_is_what_it_was(algo):
    """Density 1 (the default) builds the dense networks: same parameters, same values for a seed."""
    base = OFF_POLICY if algo in ("ddpg", "td3", "sac") else ON_POLICY
    values = {k: v for k, v in base.items() if not k.startswith("block_")}
    nets = []
    for extra in ({}, {"block_density": 1.0, "block_size": 64}):
        cfg = make_config(algo, {**values, **extra})
        assert sparse_spec(cfg) is None
        torch.manual_seed(0)
        if algo in ("ddpg", "td3", "sac"):
            module = importlib.import_module(f"spintui.algos.{algo}")
            agent = getattr(module, algo.upper())(cfg, PENDULUM.observation_space, PENDULUM.action_space,
                                                  torch.device("cpu"))
            nets.append(nn.ModuleList([agent.actor, agent.critic]))
        else:
            nets.append(actor_critic.build_actor_critic(gym.make("CartPole-v1"), cfg.hidden_sizes, "cpu"))
    a, b = (n.state_dict() for n in nets)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("block_mask" in k for k in a)
    assert not any(isinstance(m, BlockSparseLinear) for m in nets[0].modules())
    if algo == "sac":  # Spinning Up's SAC at 64x64 on Pendulum: actor 3-64-64-2, two critics 4-64-64-1
        assert count_params(nets[0]) == (3 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2) + 2 * (4 * 64 + 64 + 64 * 64 + 64 + 65)


# --------------------------------------------------------------------------------------------------
# Layouts


def test_layouts_cover_every_block_row_and_column_and_come_from_the_seed():
    for density in (0.01, 0.2, 0.5, 0.9, 1.0):
        layout = covering_layout(256, 128, 16, density, seed=3)
        assert layout.mask.shape == (16, 8)
        assert layout.mask.any(0).all() and layout.mask.any(1).all()
        assert layout.nnz == min(128, max(round(density * 128), 16))
    assert torch.equal(covering_layout(256, 256, 32, 0.5, 7).mask, covering_layout(256, 256, 32, 0.5, 7).mask)
    assert not torch.equal(covering_layout(256, 256, 32, 0.5, 7).mask, covering_layout(256, 256, 32, 0.5, 8).mask)
    spec = SparseSpec(0.5, 32, seed=0)
    assert torch.equal(spec.layout("actor", 1, 256, 256).mask, SparseSpec(0.5, 32, 0).layout("actor", 1, 256, 256).mask)
    assert not torch.equal(spec.layout("actor", 1, 256, 256).mask, spec.layout("critic", 1, 256, 256).mask)
    assert not torch.equal(spec.layout("actor", 1, 256, 256).mask, SparseSpec(0.5, 32, 1).layout("actor", 1, 256, 256).mask)


def test_the_options_block_sizes_are_the_kernels():
    assert SPARSE_BLOCK_SIZES == BLOCK_SIZES


# --------------------------------------------------------------------------------------------------
# Gradients


def test_gradients_reach_every_block_of_the_sparse_layers():
    torch.manual_seed(0)
    spec = SparseSpec(0.5, 16, seed=0)
    mlp, critics = MLP([3, 64, 64, 2], sparse=spec), QEnsemble(2, 3, 1, (64, 64), spec)
    ac = actor_critic.build_actor_critic(gym.make("CartPole-v1"), (64, 64), "cpu", spec)
    obs, act = torch.randn(50, 3), torch.randn(50, 1)
    loss = mlp(obs).square().sum() + critics(obs, act).square().sum() + ac.value(torch.randn(50, 4)).square().sum()
    loss.backward()
    sparse = [mlp.params[2], critics.params[2], ac.v[2].weight]
    assert [tuple(p.shape[-3:]) for p in sparse] == [(8, 16, 16)] * 3
    for p in sparse:  # every stored block gets a gradient (each member of the stacked critics too)
        assert p.grad is not None and bool((p.grad.flatten(-2).abs().sum(-1) > 0).all())
    # the stacked critics' sparse layer is each member's own BlockSparseLinear
    layer = BlockSparseLinear(64, 64, layout=critics.layouts[1])
    with torch.no_grad():
        layer.weight.copy_(critics.params[2][1])
        layer.bias.copy_(critics.params[3][1, 0])
        hidden = torch.relu(torch.cat([obs, act], 1) @ critics.params[0][1] + critics.params[1][1])
        q = torch.relu(layer(hidden)) @ critics.params[4][1] + critics.params[5][1]
        assert torch.allclose(critics(obs, act)[1], q[:, 0], atol=1e-5)


def test_trpo_differentiates_sparse_layers_twice():
    cfg = make_config("trpo", ON_POLICY)
    ac = actor_critic.build_actor_critic(gym.make("CartPole-v1"), cfg.hidden_sizes, "cpu", sparse_spec(cfg))
    trpo = importlib.import_module("spintui.algos.trpo")
    trpo.twice_differentiable(ac)
    obs = torch.randn(20, 4)
    params = list(ac.pi.parameters())
    with torch.no_grad():
        old = ac.pi.distribution(obs)
    kl = torch.distributions.kl_divergence(old, ac.pi.distribution(obs)).mean()
    grad = trpo.flat_grad(kl, params, create_graph=True)
    hv = trpo.flat_grad(grad @ torch.ones_like(grad), params)  # a Hessian-vector product
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# Refusals (one line, exit 2, nothing created)


@pytest.mark.parametrize("args, fragments", [
    (["ppo", "--env", "CartPole-v1", "--block-density", "0"], ["--block-density", "(0, 1]", "0"]),
    (["sac", "--env", "Pendulum-v1", "--block-density", "1.5"], ["--block-density", "(0, 1]", "1.5"]),
    (["td3", "--env", "Pendulum-v1", "--block-size", "24"], ["--block-size", "16, 32, 64, 128", "24"]),
    (["vpg", "--env", "CartPole-v1", "--block-density", "0.5", "--block-size", "128"],
     ["--block-size 128", "divide", "--hidden-sizes 64,64"]),
    (["ddpg", "--env", "Pendulum-v1", "--block-density", "0.5", "--hidden-sizes", "256,80"],
     ["--block-size 32", "80 is not a multiple of 32"]),
    (["trpo", "--env", "CartPole-v1", "--block-density", "0.5", "--hidden-sizes", "64"],
     ["--block-density", "hidden-to-hidden", "--hidden-sizes 64"]),
    (["sac", "--env", "Pendulum-v1", "--block-density", "0.5", "--update", "native"],
     ["--update native", "block-sparse", "--update auto or torch"]),
])
def test_bad_sparse_options_are_one_line_exit_2_before_any_run(tmp_path, spintui_here, args, fragments):
    runs = tmp_path / "runs"
    # --steps 100: a value wrongly accepted costs a short run, not a long one
    result = spintui_here("train", *args, "--steps", "100", "--headless", "--runs-dir", str(runs))
    result.assert_one_line_error(2, *fragments)
    assert not runs.exists() or not any(runs.iterdir())


def test_make_config_refuses_what_the_cli_refuses():
    with pytest.raises(ConfigError, match="divide every hidden size"):
        make_config("sac", {"env": "Pendulum-v1", "block_density": 0.5, "block_size": 64, "hidden_sizes": "96,96"})
    make_config("sac", {"env": "Pendulum-v1", "block_size": 64, "hidden_sizes": "96,96"})  # dense: no block applies


# --------------------------------------------------------------------------------------------------
# Runs: the fallback's reason, checkpoints, eval, resume, the header


@pytest.fixture(scope="module")
def sparse_runs(tmp_path_factory) -> dict[str, Path]:
    """A short sparse run of each algorithm (SAC with --update auto, where the C update would run)."""
    root = tmp_path_factory.mktemp("sparse")
    out = {}
    for algo in ("vpg", "trpo", "ppo", "ddpg", "td3", "sac"):
        out[algo] = run_dir = new_run(root, algo, algo)
        assert train_run(run_dir) == "finished"
    return out


def test_the_first_event_says_why_the_compiled_update_is_not_used(sparse_runs):
    first = events(sparse_runs["sac"])[0]
    assert "block-sparse d0.5 b16 hidden layers" in first
    assert "PyTorch update (compiled update unavailable: it works on dense weight matrices" in first
    assert "block-sparse d0.5 b16 hidden layers" in events(sparse_runs["ppo"])[0]


@pytest.mark.parametrize("algo", ["vpg", "trpo", "ppo", "ddpg", "td3", "sac"])
def test_checkpoints_hold_the_layouts_and_eval_rebuilds_the_trained_networks(sparse_runs, algo):
    from spintui.algos.evaluate import evaluate

    run_dir = sparse_runs[algo]
    checkpoint = load_checkpoint(run_dir)
    saved = {f"{m}.{k}": v for m, state in checkpoint["modules"].items() for k, v in state.items() if "block_mask" in k}
    # one hidden-to-hidden layer per network: pi and v; actor, critics and their targets (SAC has no target actor)
    assert len(saved) == {"sac": 3, "ddpg": 4, "td3": 4}.get(algo, 2)
    module = importlib.import_module(f"spintui.algos.{algo}")
    env = gym.make(checkpoint["config"]["env"])
    policy = module.load_policy(checkpoint, env, "cpu")
    obs, _ = env.reset(seed=1)
    action = policy(obs)
    # a network built from another seed has other layouts until it loads the checkpoint's
    other = {**checkpoint, "config": {**checkpoint["config"], "seed": 99}}
    if algo in ("ddpg", "td3", "sac"):
        actor = off_policy_agent(algo, seed=99).actor
        before = masks(actor)
        actor.load_state_dict(checkpoint["modules"]["actor"])
        after, trained = masks(actor), {k[len("actor."):]: v for k, v in saved.items() if k.startswith("actor.")}
    else:
        ac = actor_critic.build_actor_critic(env, checkpoint["config"]["hidden_sizes"], "cpu", sparse_spec(other["config"]))
        before = masks(ac)
        ac.load_state_dict(checkpoint["modules"]["ac"])
        after, trained = masks(ac), {k[len("ac."):]: v for k, v in saved.items()}
    assert any(not torch.equal(before[k], trained[k]) for k in trained)
    assert after.keys() == trained.keys() and all(torch.equal(after[k], trained[k]) for k in trained)
    assert np.allclose(module.load_policy(other, env, "cpu")(obs), action)  # eval follows the checkpoint, not the seed
    result = evaluate(run_dir, episodes=1, seed=5)
    assert result["episodes"] == 1 and np.isfinite(result["mean_return"])


def test_eval_of_a_sparse_run_through_the_cli(sparse_runs, spintui_here):
    result = spintui_here("eval", str(sparse_runs["sac"]), "--episodes", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 1


def test_resume_rebuilds_the_checkpoints_layouts_and_continues_bitwise(tmp_path, monkeypatch):
    whole = new_run(tmp_path, "sac", "whole")
    assert train_run(whole) == "finished"
    cut = new_run(tmp_path, "sac", "cut")
    stopped_after_first_epoch(monkeypatch, cut)
    assert train_run(cut) == "finished"
    a, b = load_checkpoint(whole)["modules"], load_checkpoint(cut)["modules"]
    assert all(torch.equal(a[m][k], b[m][k]) for m in a for k in a[m])

    # A checkpoint whose layout differs from what the seed gives (same block count): resuming keeps it.
    moved = new_run(tmp_path, "sac", "moved")
    stopped_after_first_epoch(monkeypatch, moved)
    checkpoint = load_checkpoint(moved)
    mask = checkpoint["modules"]["actor"]["net.block_mask1"]
    shifted = mask.roll(1, 0)
    assert not torch.equal(shifted, mask)
    checkpoint["modules"]["actor"]["net.block_mask1"] = shifted
    torch.save(checkpoint, RunPaths(moved).latest_checkpoint)
    assert train_run(moved) == "finished"
    assert torch.equal(load_checkpoint(moved)["modules"]["actor"]["net.block_mask1"], shifted)


def test_the_header_names_the_sparse_layers(sparse_runs):
    from spintui.tui.data import RunTail
    from spintui.tui.frames import TrainFrame, header_rows
    from spintui.tui.widgets import header_text

    tail = RunTail(sparse_runs["sac"])
    tail.poll()
    assert ("", "block-sparse d0.5 b16") in tail.hyperparameters()
    rows = header_rows([tail], now=tail.start_time + 1)
    frame = TrainFrame(header=rows, trainer=(None, None))
    assert "block-sparse d0.5 b16" in header_text(frame, paused=False, step_name="step").plain
    manifest = json.loads(RunPaths(sparse_runs["sac"]).manifest.read_text())
    assert (manifest["config"]["block_density"], manifest["config"]["block_size"]) == (0.5, 16)


# --------------------------------------------------------------------------------------------------
# Learning with block-sparse hidden layers (fixed seeds)


@pytest.mark.slow
def test_sac_learns_pendulum_with_half_of_its_hidden_blocks(tmp_path):
    from test_offpolicy import BUDGET, THRESHOLD, best_test_return

    best, steps, first_event = best_test_return(tmp_path, "sac", seed=0, hidden_sizes="256,256",
                                                block_density=0.5, block_size=32)
    assert "block-sparse d0.5 b32 hidden layers" in first_event and "PyTorch update" in first_event, first_event
    assert best >= THRESHOLD, f"sparse SAC reached only {best:.1f} in {steps} steps"
    assert steps <= BUDGET


class StopAtReturn(RunWriter):
    """Asks for a clean stop at the first epoch whose mean training return reaches PPO_THRESHOLD."""

    def epoch(self, epoch, step, stats):
        super().epoch(epoch, step, stats)
        if stats.get("AverageEpRet", -np.inf) >= PPO_THRESHOLD:
            self.request_stop()


PPO_THRESHOLD = 300.0


@pytest.mark.slow
def test_ppo_learns_cartpole_with_half_of_its_hidden_blocks(tmp_path):
    from spintui.algos import ppo

    cfg = make_config("ppo", {"env": "CartPole-v1", "device": "cpu", "threads": 1, "steps": 100_000, "seed": 0,
                              "block_density": 0.5, "block_size": 16})
    run_dir = create_run(tmp_path, kind="train", algo="ppo", env=cfg.env, seed=0, config=config_to_dict(cfg))
    writer = StopAtReturn(run_dir, heartbeat=False)
    ppo.train(cfg, writer)
    writer.close()
    lines = RunPaths(run_dir).metrics.read_text().splitlines()
    epochs = [r for r in map(json.loads, lines) if r.get("kind") == "epoch"]
    returns = [round(e["stats"]["AverageEpRet"], 1) for e in epochs]
    assert max(returns) >= PPO_THRESHOLD and epochs[-1]["step"] <= 100_000, returns
