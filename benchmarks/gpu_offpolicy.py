"""SAC and TD3 on one GPU: the eager update against `--update compile` (CUDA graphs), in one process, < 5 minutes.

    python benchmarks/gpu_offpolicy.py [--env HalfCheetah-v5] [--algos sac,td3] [--steps 12000] [--eager-steps 4000]

Spinning Up's defaults and schedule (256x256 nets, batch 100, updates from step 1,000, every 50
steps 50 gradient steps, 10,000 uniform random steps first). For each algorithm, in this order:

1. Update: milliseconds per update over blocks of 50 by the eager update (`--update torch`) and by
   the compiled functional update replayed as one CUDA graph per block (`--update compile`), the
   compile and capture seconds, and the largest difference of their statistics on the same
   networks and draws (a few updates, before rounding-level differences grow).
2. Acting: microseconds per action with the actor on the GPU and with a CPU copy (what the trainer
   measured and picked is also in its first event).
3. Training: the trainer as `spintui train` runs it, `--update compile` for --steps and `--update
   torch` for --eager-steps, printing env steps/s of the last epoch and overall (the compile time
   included), and the deterministic test return at the eager run's budget for both (at these short
   budgets the policy has barely left its random phase, so returns say only that neither is broken:
   matching returns need --steps and --eager-steps of 100,000 or more, and several seeds).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time

import numpy as np
import torch

BLOCK, BATCH = 50, 100


def make_agent(algo: str, update: str, env, device):
    from spintui.algos.config import make_config

    torch.manual_seed(0)
    cfg = make_config(algo, {"env": env.spec.id, "update": update, "device": "cuda"})
    module = importlib.import_module(f"spintui.algos.{algo}")
    agent_class = {"sac": "SAC", "td3": "TD3", "ddpg": "DDPG"}[algo]
    return getattr(module, agent_class)(cfg, env.observation_space, env.action_space, device)


def filled_buffer(env, device, rows: int = 20_000):
    from spintui.algos.replay import ReplayBuffer

    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    buffer = ReplayBuffer(obs_dim, act_dim, 1_000_000, device)
    rng = np.random.default_rng(0)
    for _ in range(rows):
        buffer.store(rng.normal(size=obs_dim), rng.uniform(env.action_space.low, env.action_space.high),
                     rng.normal(), rng.normal(size=obs_dim), rng.random() < 0.01)
    return buffer


def ms_per_update(agent, buffer, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds + 1):  # the first round warms up (and captures the graph)
        torch.cuda.synchronize()
        start = time.perf_counter()
        stats = agent.update(*buffer.sample_block(BLOCK, BATCH))
        float(stats["LossQ"].sum())  # what the trainer reads back once per block
        times.append((time.perf_counter() - start) / BLOCK * 1e3)
    return statistics.median(times[1:])


def largest_difference(algo: str, env, device) -> float:
    """Max |eager - compiled| / max |eager| over the statistics of 3 updates from the same networks and draws."""
    eager, compiled = make_agent(algo, "torch", env, device), make_agent(algo, "compile", env, device)
    buffer = filled_buffer(env, device, rows=2_000)
    torch.manual_seed(1)
    block = buffer.sample_block(3, BATCH)
    torch.manual_seed(2)
    a = eager.update(*block)
    torch.manual_seed(2)
    b = compiled.update(*block)
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-12)) for k in a)


def train(algo: str, env_id: str, update: str, steps: int) -> dict:
    from spintui.algos.config import config_to_dict, make_config
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import create_run

    cfg = make_config(algo, {"env": env_id, "steps": steps, "device": "cuda", "update": update,
                             "num_test_episodes": 5})
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = create_run(tmp, kind="train", algo=algo, env=env_id, seed=0, config=config_to_dict(cfg))
        writer = RunWriter(run_dir, heartbeat=False)
        events = []
        real_event = writer.event
        writer.event = lambda message, **kw: (events.append(message), real_event(message, **kw))[1]
        start = time.perf_counter()
        row = importlib.import_module(f"spintui.algos.{algo}").train(cfg, writer)
        seconds = time.perf_counter() - start
        writer.close()
    return {"steps_per_sec_last_epoch": row["StepsPerSec"], "steps_per_sec_overall": steps / seconds,
            "test_return": row["AverageTestEpRet"], "first_event": events[0] if events else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--algos", default="sac,td3")
    parser.add_argument("--steps", type=int, default=12_000, help="env steps of each --update compile run")
    parser.add_argument("--eager-steps", type=int, default=4_000, help="env steps of each --update torch run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures the GPU path")
    import gymnasium as gym

    from spintui.algos.offpolicy_acting import TorchActor, cpu_policy, time_acting

    device = torch.device("cuda")
    env = gym.make(args.env)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.env}", flush=True)
    for algo in args.algos.split(","):
        buffer = filled_buffer(env, device)
        eager = make_agent(algo, "torch", env, device)
        start = time.perf_counter()
        compiled = make_agent(algo, "compile", env, device)
        compile_s = time.perf_counter() - start
        ms_eager, ms_compiled = ms_per_update(eager, buffer), ms_per_update(compiled, buffer)
        print(f"{algo} update: eager {ms_eager:.2f} ms, compiled + CUDA graph {ms_compiled:.2f} ms "
              f"({ms_eager / ms_compiled:.1f}x); compile {compile_s:.1f} s "
              f"(of which torch.compile {compiled.update_path.compile_seconds:.1f} s)", flush=True)
        print(f"{algo} statistics, eager vs compiled, same draws: largest relative difference "
              f"{largest_difference(algo, env, device):.2e}", flush=True)
        obs_dim = env.observation_space.shape[0]
        squashed = algo == "sac"
        on_gpu = time_acting(TorchActor(compiled.actor, device, squashed), obs_dim)
        on_cpu = time_acting(cpu_policy(eager.actor.to("cpu"), squashed), obs_dim)
        print(f"{algo} acting: {on_gpu * 1e6:.0f} us per action on the GPU, {on_cpu * 1e6:.0f} us with a CPU copy "
              f"({'CPU copy' if on_cpu < on_gpu else 'GPU'} faster)", flush=True)
        fast = train(algo, args.env, "compile", args.steps)
        print(f"{algo} train --update compile, {args.steps:,} steps: {fast['steps_per_sec_last_epoch']:.0f} steps/s "
              f"last epoch, {fast['steps_per_sec_overall']:.0f} overall; test return {fast['test_return']:.1f}; "
              f"first event: {fast['first_event']}", flush=True)
        slow = train(algo, args.env, "torch", args.eager_steps)
        same_budget = train(algo, args.env, "compile", args.eager_steps) if args.eager_steps != args.steps else fast
        print(f"{algo} train --update torch, {args.eager_steps:,} steps: {slow['steps_per_sec_last_epoch']:.0f} "
              f"steps/s last epoch; test return at {args.eager_steps:,} steps: eager {slow['test_return']:.1f}, "
              f"compiled {same_budget['test_return']:.1f}", flush=True)


if __name__ == "__main__":
    main()
