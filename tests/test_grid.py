"""Grids: several values per option make the Cartesian product of runs, named from what varies."""

from __future__ import annotations

import pytest

from spintui.algos.config import PPOConfig, SACConfig
from spintui.algos.grid import expand
from spintui.errors import ConfigError


def test_comma_lists_and_semicolon_lists_make_the_product_seed_last():
    varying, points = expand(SACConfig, {"seed": "0,1", "gamma": "0.98,0.99", "hidden_sizes": "64,64;256,256",
                                         "env": "Pendulum-v1"})
    assert varying == ["gamma", "hidden_sizes", "seed"]
    assert len(points) == 8
    assert [p.name for p in points[:3]] == ["gamma0.98_hidden-sizes64x64_s0", "gamma0.98_hidden-sizes64x64_s1",
                                            "gamma0.98_hidden-sizes256x256_s0"]
    assert points[0].settings == {"seed": 0, "gamma": 0.98, "hidden_sizes": (64, 64), "env": "Pendulum-v1"}
    assert len({p.name for p in points}) == 8


def test_one_value_everywhere_is_not_an_experiment():
    varying, points = expand(SACConfig, {"seed": "3", "hidden_sizes": "32,32"})
    assert varying == [] and len(points) == 1 and points[0].settings["hidden_sizes"] == (32, 32)


def test_grid_file_lists_and_envs_name_the_runs():
    varying, points = expand(PPOConfig, {"env": "CartPole-v1,Acrobot-v1"},
                             {"seed": [0, 1], "hidden_sizes": [[32], [64, 64]], "lam": 0.9})
    assert varying == ["env", "hidden_sizes", "seed"] and len(points) == 8
    assert points[0].name == "CartPole-v1_hidden-sizes32_s0" and points[0].settings["lam"] == 0.9


@pytest.mark.parametrize("given, grid, message", [
    ({"seed": "0,,1"}, None, "--seed: empty value"),
    ({"hidden_sizes": "64,64;"}, None, "--hidden-sizes: empty value"),
    ({"gamma": "0.9,2"}, None, "--gamma must be a number in [0, 1], got '2'"),
    ({"device": "cpu,tpu"}, None, "--device must be one of auto, cpu, cuda, got 'tpu'"),
    ({}, {"gama": [0.9, 0.99]}, "--grid: no option 'gama'"),
    ({"seed": "1,2"}, {"seed": [3, 4]}, "--seed is given on the command line and in --grid"),
    ({"seed": ",".join(map(str, range(40))), "gamma": "0.9,0.95,0.99"}, None, "the grid has 120 runs, more than"),
])
def test_bad_grids_are_one_line(given, grid, message):
    with pytest.raises(ConfigError) as info:
        expand(SACConfig, given, grid, max_runs=100)
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1
