"""Acting: the NumPy forward of a CPU actor gives the actor's own actions, follows its updates, and the
agents use it (block-sparse actors keep the torch module)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from spintui.algos.config import make_config
from spintui.algos.offpolicy_acting import NumpyActor, TorchActor
from spintui.algos.sac import SAC
from spintui.algos.td3 import TD3

torch.set_num_threads(1)
CPU = torch.device("cpu")


def agent(algo: str, **overrides):
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    cfg = make_config(algo, {"env": "Pendulum-v1", "device": "cpu", **overrides})
    cls = SAC if algo == "sac" else TD3
    return cls(cfg, env.observation_space, env.action_space, CPU)


def observations(n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 3, size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_numpy_actor_gives_the_modules_deterministic_action(algo):
    a = agent(algo)
    squashed = algo == "sac"
    assert isinstance(a.acting.policy, NumpyActor)
    reference = TorchActor(a.actor, CPU, squashed)
    for obs in observations():
        ours, theirs = a.acting.policy(obs, True), reference(obs, True)
        assert ours.dtype == np.float32 and ours.shape == (1,)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        assert abs(ours[0]) <= 2.0  # Pendulum's bounds


def test_numpy_sac_sample_is_the_reparameterised_sample_of_its_draw():
    a = agent("sac")
    for i, obs in enumerate(observations(16)):
        np.random.seed(i)
        ours = a.acting.policy(obs, False)
        np.random.seed(i)
        eps = torch.as_tensor(np.random.standard_normal(1).astype(np.float32)).reshape(1, 1)
        with torch.no_grad():
            theirs, _ = a.actor(torch.as_tensor(obs).unsqueeze(0), eps=eps, with_logprob=False)
        np.testing.assert_allclose(ours, theirs[0].numpy(), rtol=1e-5, atol=1e-6)
    np.random.seed(0)
    draws = np.array([a.acting.policy(observations(1)[0], False) for _ in range(200)])
    assert draws.std() > 0.01  # stochastic when not deterministic


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_numpy_actor_follows_updates_of_the_actor(algo):
    a = agent(algo)
    obs = observations(1)[0]
    before = a.acting.policy(obs, True).copy()
    with torch.no_grad():
        for p in a.actor.parameters():
            p.add_(0.05 * torch.randn_like(p))  # in place, as every update path writes
    after = a.acting.policy(obs, True)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, TorchActor(a.actor, CPU, algo == "sac")(obs, True), rtol=1e-5, atol=1e-6)
    a.actor.load_state_dict({k: v.clone() for k, v in a.actor.state_dict().items()})
    a.acting.refresh()
    np.testing.assert_allclose(a.acting.policy(obs, True), after, rtol=1e-6)


def test_td3_exploration_noise_is_added_and_clipped():
    a = agent("td3", act_noise=10.0)
    np.random.seed(0)
    actions = np.array([a.act(observations(1)[0]) for _ in range(100)])
    assert actions.dtype == np.float32
    assert actions.min() == -2.0 and actions.max() == 2.0  # noise this large hits both bounds


def test_block_sparse_actor_acts_through_torch():
    a = agent("td3", hidden_sizes=(64, 64), block_density=0.5, block_size=16)
    assert isinstance(a.acting.policy, TorchActor)
    assert a.act(observations(1)[0], True).shape == (1,)
