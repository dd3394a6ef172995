"""Spinning Up's off-policy loop, which DDPG, TD3 and SAC share.

The loop (`run_off_policy`) is the one in Spinning Up's ddpg.py / td3.py / sac.py, which is the
same in all three: random actions for `start_steps`, then the agent's noisy policy; from
`update_after`, every `update_every` env steps run `update_every` gradient steps; after each epoch
test the deterministic policy, log a row and save a checkpoint. Each algorithm module supplies an
agent with `act(obs, deterministic)` and `update(batch)`; everything algorithm-specific lives there.
The replay buffer is in replay.py, the networks and optimizer steps in offpolicy_nets.py.

Speed notes (why the code looks the way it does):
* Replay samples for a whole update block are drawn and gathered at once; logging statistics stay
  on the device and are read back once per block (no host sync inside the update loop).
* On the CPU, `--update auto` (the default) runs each block of gradient steps in compiled C
  instead (native.py, offpolicy_update.c): the same arithmetic on the same tensors, about twice as
  fast, because at these sizes the eager update's time goes to ~700 small tensor operations rather
  than to its matrix products. The eager update stays the reference and the GPU path.
* Resuming (`spintui train --resume`) costs nothing per step: checkpoints hold generator states
  and, by default, the replay buffer (algos/resume.py), and are taken only at their usual times.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from spintui.algos import replay
from spintui.algos.config import OffPolicyConfig, config_to_dict
from spintui.algos.core import (EpochStats, PendingCheckpoint, PhaseTimer, resolve_device, save_checkpoint, seed_env,
                                set_seed, set_threads)
from spintui.algos.replay import ReplayBuffer
from spintui.algos.resume import env_state, load_replay, restore_networks, restore_training_state, training_state
from spintui.algos.sparse_layers import sparse_spec
from spintui.algos.trace import block_tracer, traced

# --------------------------------------------------------------------------------------------------
# Environment


def make_box_env(algo: str, env_id: str, **kwargs):
    """gymnasium.make, refusing anything but a Box action space (also when train() is called directly)."""
    import gymnasium as gym

    from spintui.algos.envs import make_env

    env = make_env(env_id, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Box):
        space = env.action_space
        env.close()
        raise ValueError(f"{algo} needs a continuous (Box) action space; {env_id} has {space}; try ppo")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        space = env.observation_space
        env.close()
        raise ValueError(f"{algo} needs a flat Box observation space; {env_id} has {space}")
    return env



# --------------------------------------------------------------------------------------------------
# The off-policy loop (Spinning Up's, with gymnasium's terminated/truncated)


def update_description(agent, device: torch.device) -> str:
    """Which code runs the gradient steps (offpolicy_paths), and why not a faster one where it fell back."""
    return agent.update_path.describe() + agent.acting.describe()


def run_test_episodes(agent, env, cfg: OffPolicyConfig, run, step: int, stats: EpochStats) -> None:
    """Run `num_test_episodes` with the deterministic policy (Spinning Up's test_agent)."""
    for _ in range(cfg.num_test_episodes):
        obs, _ = env.reset()
        ep_ret, ep_len, done = 0.0, 0, False
        while not done:
            obs, rew, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            ep_ret += float(rew)
            ep_len += 1
            done = terminated or truncated or ep_len == cfg.max_ep_len
        stats.add(TestEpRet=ep_ret, TestEpLen=ep_len)
        run.episode(step, ep_ret, ep_len, test=True)


def run_off_policy(cfg: OffPolicyConfig, run, algo: str, make_agent: Callable, resume: dict | None = None) -> dict:
    """Train `make_agent(cfg, obs_space, act_space, device)` on cfg.env; returns the last epoch's stats.

    The agent provides: act(obs_numpy, deterministic) -> action numpy; update(obs, act, rew,
    next_obs, done) on one update block of stacked minibatches -> {name: tensor} statistics;
    modules(), optimizers(), extra() and restore_extra() for checkpoints; stat_layout() naming how
    each statistic is logged. `resume`: a checkpoint to continue from (algos/resume.py).
    """
    device = resolve_device(cfg.device)
    set_threads(cfg.threads)
    set_seed(cfg.seed)
    env = make_box_env(algo, cfg.env, env_kwargs=cfg.env_kwargs)
    test_env = make_box_env(algo, cfg.env, env_kwargs=cfg.env_kwargs)
    obs, _ = seed_env(env, cfg.seed)
    seed_env(test_env, cfg.seed + 1)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]

    agent = make_agent(cfg, env.observation_space, env.action_space, device)
    buffer = ReplayBuffer(obs_dim, act_dim, cfg.replay_size, device)
    save_buffer = replay.saves_buffer(cfg.save_buffer, buffer)
    total_steps = cfg.total_steps()
    config = config_to_dict(cfg)
    nets = f", {sparse_spec(cfg).describe()} hidden layers" if cfg.block_sparse else ""
    run.event(f"{algo} on {cfg.env}: {total_steps:,} steps on {device}, torch threads {torch.get_num_threads()}{nets}, "
              f"{update_description(agent, device)}; {replay.describe(cfg.save_buffer, buffer)}")
    step, epoch, elapsed, update_after = 0, 0, 0.0, cfg.update_after
    if resume is not None:
        step, epoch, elapsed = int(resume["step"]), int(resume["epoch"]), float(resume.get("elapsed", 0.0))
        if not resume_agent(resume, agent, buffer, run):
            update_after = step + cfg.update_after  # an empty buffer refills before updates go on
        agent.acting.refresh()
        restore_training_state(resume, {"train": env, "test": test_env})
        obs, _ = env.reset()  # the environment starts a fresh episode
    run.set_progress(step=step, total_steps=total_steps, epoch=epoch)
    tracer = block_tracer(cfg, run, device, native=bool(getattr(agent, "native", None)),
                          update=update_description(agent, device))
    if tracer is not None and resume is not None:  # blocks count from the start of the run
        tracer.index = sum(1 for t in range(step) if t >= cfg.update_after and t % cfg.update_every == 0)

    stats, timer = EpochStats(), PhaseTimer()
    with_min_max, average_only = agent.stat_layout()
    epoch_start = time.perf_counter()
    start = epoch_start - elapsed
    epoch_start_step, last, saved_step = step, {}, (step if resume is not None else -1)
    ep_ret, ep_len = 0.0, 0
    fresh_episode = (-1, None)  # (step, env generators) when an episode ended at an epoch's end, before the reset

    def checkpoint(step: int, epoch: int) -> PendingCheckpoint:
        """Networks, optimizers, generators and (with --save-buffer) the replay buffer, not yet in place."""
        sidecars, saved = {}, {}
        if save_buffer:
            sidecars[f"replay-{step}.pt"] = buffer.state()
            saved = {"replay": {"file": f"replay-{step}.pt", "rows": len(buffer), "bytes": buffer.capacity_bytes}}
        state = training_state({"train": env, "test": test_env}, time.perf_counter() - start)
        if fresh_episode[0] == step:  # a resume then draws the very episode that comes next here
            state["envs"]["train"] = fresh_episode[1]
        return save_checkpoint(run.run_dir, algo=algo, config=config, step=step, epoch=epoch, modules=agent.modules(),
                               optimizers=agent.optimizers(), extra=agent.extra(), resume={**state, **saved},
                               sidecars=sidecars, commit=False)

    def end_epoch(step: int, epoch: int) -> dict:
        nonlocal epoch_start, epoch_start_step, saved_step
        with timer.phase("test"):
            run_test_episodes(agent, test_env, cfg, run, step, stats)
        pending = None
        if epoch % cfg.save_freq == 0 or step == total_steps:
            with timer.phase("checkpoint"):
                pending = checkpoint(step, epoch)
            saved_step = step
        now = time.perf_counter()
        row = {
            **stats.summary(with_min_max=("EpRet", "TestEpRet", *with_min_max),
                            average_only=("EpLen", "TestEpLen", *average_only)),
            "TotalEnvInteracts": step,
            **agent.epoch_values(),
            "StepsPerSec": (step - epoch_start_step) / max(now - epoch_start, 1e-9),
            **timer.summary(),
            "Time": now - start,
        }
        run.epoch(epoch, step, row)
        run.set_progress(step=step, epoch=epoch, steps_per_sec=row["StepsPerSec"],
                         test_return=row.get("AverageTestEpRet"))
        if pending is not None:  # the epoch's records reach the run before the checkpoint that follows them
            run.flush()
            pending.commit()
        stats.clear()
        timer.reset()
        epoch_start, epoch_start_step = time.perf_counter(), step
        return row

    for t in range(step, total_steps):
        if run.stop_requested:
            break
        # Uniform random actions first (seeded action space), then the noisy policy.
        with timer.phase("act"):
            act = env.action_space.sample() if t < cfg.start_steps else agent.act(obs, deterministic=False)
        with timer.phase("env"):
            next_obs, rew, terminated, truncated, _ = env.step(act)
        ep_ret += float(rew)
        ep_len += 1
        # Bootstrap through truncation and max_ep_len cut-offs; only a true terminal state ends the return.
        buffer.store(obs, act, rew, next_obs, terminated)
        obs = next_obs
        step = t + 1

        if terminated or truncated or ep_len == cfg.max_ep_len:
            stats.add(EpRet=ep_ret, EpLen=ep_len)
            run.episode(step, ep_ret, ep_len)
            run.set_progress(step=step, last_return=ep_ret)
            if step % cfg.steps_per_epoch == 0 or step == total_steps:
                fresh_episode = (step, env_state(env))
            obs, _ = env.reset()
            ep_ret, ep_len = 0.0, 0

        # Spinning Up's schedule: every update_every steps, update_every gradient steps.
        if t >= update_after and t % cfg.update_every == 0:
            with timer.phase("update"), traced(tracer):
                batches = buffer.sample_block(cfg.update_every, cfg.batch_size)
                values = agent.update(*batches)
                agent.acting.refresh()
            with timer.phase("log"):
                values = {k: v.detach().float().cpu().numpy() for k, v in values.items()}  # one sync per block
                stats.add(**values)
                run.scalars({k: float(np.mean(v)) for k, v in values.items()}, step)
                run.set_progress(step=step, steps_per_sec=(step - epoch_start_step) / max(time.perf_counter() - epoch_start, 1e-9))

        if step % cfg.steps_per_epoch == 0 or step == total_steps:
            epoch += 1
            last = end_epoch(step, epoch)

    if tracer is not None:
        tracer.finish()  # a run stopped before the last traced block keeps what was captured
    if run.stop_requested and saved_step != step:  # stopped mid-epoch: keep what was learned
        run.flush()
        checkpoint(step, epoch).commit()
        run.event(f"stopped at step {step:,}; checkpoint saved")
    env.close()
    test_env.close()
    return last


def resume_agent(checkpoint: dict, agent, buffer: ReplayBuffer, run) -> bool:
    """Networks, optimizers, the agent's extra state and the replay buffer from `checkpoint`; logs
    where training goes on. False when the buffer was not saved (it starts empty)."""
    restore_networks(checkpoint, agent.modules(), agent.optimizers())
    agent.restore_extra(checkpoint.get("extra") or {})
    saved = load_replay(checkpoint, run.run_dir)
    if saved is not None:
        buffer.load_state(saved)
    what = f"{len(buffer):,} transitions in the replay buffer" if saved is not None else \
        "an empty replay buffer (it was not saved): updates wait for update_after new steps"
    run.event(f"resumed from the checkpoint at step {checkpoint['step']:,} (epoch {checkpoint['epoch']}) with "
              f"{what}; the environment starts a fresh episode")
    return saved is not None
