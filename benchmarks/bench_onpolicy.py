"""PPO speed on CartPole-v1 at Spinning Up's defaults: spintui vs Stable-Baselines3, alternating.

    .venv/bin/python benchmarks/bench_onpolicy.py [--steps 20000] [--rounds 3] [--num-envs 1]

Env steps per second including the updates (timed from building the agent and its envs to the end
of training, imports excluded), one torch thread each, every measurement in a fresh
process; the two alternate (and swap order every round) so that a busy machine hurts both alike.
Prints each round's ratio and the medians.

SB3 is set as close as its API allows: n_steps 4000 (one env), batch_size 4000, n_epochs 80,
target_kl 0.01, gae_lambda 0.97, gamma 0.99, learning_rate 3e-4, separate 64x64 tanh policy and
value networks. What still differs: SB3 trains policy and value with one Adam optimizer on one loss
(value coefficient 0.5, lr 3e-4 for both, where Spinning Up uses a second Adam at 1e-3 for 80 value
steps), its KL early stop also ends the value training, it clips the gradient norm at 0.5, and it
initializes layers orthogonally. spintui always runs the 80 value steps, so it does more update work.
Needs `pip install stable-baselines3`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def run_spintui(steps: int, num_envs: int, seed: int) -> float:
    import torch

    torch.set_num_threads(1)
    from spintui.algos import ppo
    from spintui.algos.config import config_to_dict, make_config
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import create_run

    cfg = make_config("ppo", {"env": "CartPole-v1", "steps": steps, "seed": seed, "device": "cpu", "threads": 1,
                              "num_envs": num_envs, "save_freq": 1000})
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = create_run(tmp, kind="train", algo="ppo", env=cfg.env, seed=seed, config=config_to_dict(cfg))
        writer = RunWriter(run_dir)
        start = time.perf_counter()
        ppo.train(cfg, writer)
        elapsed = time.perf_counter() - start
        writer.close()
    return steps / elapsed


def run_sb3(steps: int, seed: int) -> float:
    import torch

    torch.set_num_threads(1)
    from stable_baselines3 import PPO

    start = time.perf_counter()  # both sides are timed from building the agent to the end
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=4000, batch_size=4000, n_epochs=80, target_kl=0.01,
                gae_lambda=0.97, gamma=0.99, learning_rate=3e-4, seed=seed, device="cpu", verbose=0,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def measure(which: str, steps: int, num_envs: int, seed: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--one", which, "--steps", str(steps), "--num-envs",
                          str(num_envs), "--seed", str(seed)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="env steps per measurement (5 epochs)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=1, help="spintui's num_envs (SB3 keeps one env)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", choices=("spintui", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sps = run_spintui(args.steps, args.num_envs, args.seed) if args.one == "spintui" else run_sb3(args.steps, args.seed)
        print(json.dumps({"steps_per_sec": sps}))
        return

    ours, theirs, ratios = [], [], []
    for r in range(args.rounds):
        order = ("spintui", "sb3") if r % 2 == 0 else ("sb3", "spintui")
        got = {which: measure(which, args.steps, args.num_envs, args.seed + r) for which in order}
        ours.append(got["spintui"])
        theirs.append(got["sb3"])
        ratios.append(got["spintui"] / got["sb3"])
        print(f"round {r + 1}: spintui {got['spintui']:.0f} steps/s, sb3 {got['sb3']:.0f} steps/s, "
              f"ratio {ratios[-1]:.2f}", flush=True)
    print(f"median over {args.rounds} rounds (num_envs {args.num_envs}, {args.steps} steps each): "
          f"spintui {statistics.median(ours):.0f} steps/s, sb3 {statistics.median(theirs):.0f} steps/s, "
          f"ratio of medians {statistics.median(ours) / statistics.median(theirs):.2f}, "
          f"median ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
