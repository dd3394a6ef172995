"""The on-policy loop of VPG, PPO and TRPO (Spinning Up's, which is the same in all three).

    for each epoch:
        collect steps_per_epoch steps with the current policy (over all processes)
        compute rewards-to-go and GAE-lambda advantages (normalized), bootstrapping V at truncation
        update the policy                                  (the algorithm's own update)
        train_v_iters Adam steps on  mean((V(s) - R)^2)
        log a row, checkpoint; stop early on a stop request

A resumed run (`resume`, a checkpoint: algos/resume.py) starts at the checkpoint's epoch with its
networks, optimizers and generators, every environment in a fresh episode; with several processes
each takes its own generators back.

`run_on_policy` runs it for an algorithm module that supplies only its policy update and columns.
Networks are in actor_critic.py, rollouts and GAE in rollout.py, torch.distributed helpers in
data_parallel.py.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from spintui.algos.actor_critic import MLPActorCritic, build_actor_critic
from spintui.algos.config import OnPolicyConfig, config_to_dict
from spintui.algos.core import EpochStats, PhaseTimer, resolve_device, save_checkpoint, set_seed, set_threads
from spintui.algos.resume import ResumeError, restore_networks, restore_training_state, training_state
from spintui.algos.data_parallel import (any_rank, average_gradients, gather_objects, local_device, param_checksum,
                                         rank, reduce_stats, split_steps, sync_params, world_size)
from spintui.algos.rollout import Rollout
from spintui.algos.sparse_layers import sparse_spec
from spintui.algos.trace import block_tracer, traced

PolicyUpdate = Callable[[dict], dict[str, float]]


def run_on_policy(cfg: OnPolicyConfig, run, algo: str, columns: dict[str, str],
                  make_policy_update: Callable[[MLPActorCritic], tuple[PolicyUpdate, dict]],
                  resume: dict | None = None) -> None:
    """Train `algo` on cfg.env, logging into `run` (a profiles.store.RunWriter, or nothing on ranks > 0).

    `make_policy_update(ac)` returns the algorithm's policy update, data -> values logged as
    `columns` (name -> 'avg' or 'dist'), and the optimizers it keeps for checkpoints.
    """
    session = Session(algo, cfg, run)
    ac = session.ac
    update_policy, pi_optimizers = make_policy_update(ac)
    v_optimizer = torch.optim.Adam(ac.v.parameters(), lr=cfg.vf_lr)
    optimizers = {**pi_optimizers, "v": v_optimizer}
    if resume is not None:
        session.resume(resume, optimizers)

    tracer = block_tracer(cfg, run, session.device, update="PyTorch update") if session.rank == 0 else None
    if tracer is not None:
        tracer.index = session.epoch  # one update block per epoch, counted from the start of the run
    for epoch in range(session.epoch, session.epochs):
        data = session.collect()
        if data is None:  # stop requested mid-rollout: keep the last complete update
            break
        with traced(tracer):
            with session.timer.phase("policyUpdate"):
                pi_info = update_policy(data)
            with session.timer.phase("valueUpdate"):
                loss_v_old, loss_v_new = update_value(ac, v_optimizer, data, cfg.train_v_iters)
        session.end_epoch(epoch, columns, LossV=loss_v_old, DeltaLossV=loss_v_new - loss_v_old, **pi_info)
        session.checkpoint(optimizers)
        if session.should_stop(0):
            break
    if tracer is not None:
        tracer.finish()
    session.close(optimizers)


def update_value(ac: MLPActorCritic, v_optimizer: torch.optim.Optimizer, data: dict, iters: int) -> tuple[float, float]:
    """`iters` full-batch steps on (V(s) - rewards-to-go)^2; returns the loss before and after."""
    obs, ret = data["obs"], data["ret"]
    loss_v_old = None
    for _ in range(iters):
        v_optimizer.zero_grad(set_to_none=True)
        loss_v = ((ac.value(obs) - ret) ** 2).mean()
        loss_v.backward()
        average_gradients(ac.v.parameters())
        v_optimizer.step()
        if loss_v_old is None:
            loss_v_old = loss_v.item()
    with torch.no_grad():
        loss_v_new = ((ac.value(obs) - ret) ** 2).mean().item()
    if loss_v_old is None:
        loss_v_old = loss_v_new
    return loss_v_old, loss_v_new


class Session:
    """Set-up, episode and epoch logging, stop requests and checkpoints for VPG, PPO and TRPO.

    Only the process that holds the run writer (rank 0) writes the run directory; other ranks get
    a writer whose methods do nothing, and their episodes reach rank 0 at the end of each epoch.
    """

    STOP_POLL_STEPS = 100  # with several processes a stop check is a collective: not every step

    def __init__(self, algo: str, cfg, run):
        self.algo, self.cfg, self.run = algo, cfg, run
        self.config = config_to_dict(cfg)
        set_threads(cfg.threads)
        self.rank, self.world = rank(), world_size()
        self.seed = cfg.seed + 10000 * self.rank
        set_seed(self.seed)
        self.device = local_device(resolve_device(cfg.device), cfg.device)
        total = cfg.total_steps()
        steps_per_epoch = min(cfg.steps_per_epoch, total)
        num_envs = getattr(cfg, "num_envs", 1)
        steps_per_env = split_steps(steps_per_epoch, num_envs)
        self.epoch_steps = steps_per_env * num_envs * self.world  # over all processes
        self.epochs = max(1, -(-total // self.epoch_steps))
        self.total_steps = self.epochs * self.epoch_steps
        self.rollout = Rollout(cfg.env, num_envs, steps_per_env, cfg.max_ep_len, self.seed, self.device,
                               env_kwargs=cfg.env_kwargs)
        # layouts come from cfg.seed, not the rank's seed: every rank builds the same networks
        sparse = sparse_spec(cfg)
        self.ac = build_actor_critic(self.rollout.envs, cfg.hidden_sizes, self.device, sparse)
        sync_params(self.ac)
        self.stats, self.timer = EpochStats(), PhaseTimer()
        self.step = 0  # env steps over all processes at the start of the current epoch
        self.epoch = 0
        self.other_episodes: list[tuple[int, float, int]] = []
        self.start = self.epoch_start = time.perf_counter()
        self.steps_per_sec = 0.0
        self.stopped = False
        if self.rank == 0:
            run.set_progress(step=0, total_steps=self.total_steps, epoch=0)
            nets = f", {sparse.describe()} hidden layers" if sparse is not None else ""
            run.event(f"{algo}: {self.world} process(es) x {num_envs} env(s), {self.epoch_steps} steps per epoch, "
                      f"{self.epochs} epochs, device {self.device}{nets}")

    # -- during the rollout --------------------------------------------------------------------
    def global_step(self, t: int) -> int:
        return self.step + (t + 1) * self.rollout.num_envs * self.world

    def on_episode(self, t: int, ret: float, length: int) -> None:
        self.stats.add(EpRet=ret, EpLen=length)
        step = self.global_step(t)
        if self.rank == 0:
            self.run.episode(step, ret, length)
            self.run.set_progress(step=step, last_return=ret)
        else:
            self.other_episodes.append((step, ret, length))

    def should_stop(self, t: int) -> bool:
        if self.world > 1 and t % self.STOP_POLL_STEPS:
            return False
        self.stopped = any_rank(self.run.stop_requested)
        if self.stopped:
            self.run.request_stop()  # a stop seen by another rank ends this run as `stopped` too
        return self.stopped

    def collect(self) -> dict | None:
        """One epoch of experience as flat tensors, or None when a stop was requested."""
        self.epoch_start = time.perf_counter()
        with self.timer.phase("rollout"):
            if not self.rollout.collect(self.ac, self.on_episode, self.should_stop):
                return None
            data = self.rollout.finish(self.ac, self.cfg.gamma, self.cfg.lam)
        self.stats.add(VVals=data["val"])
        return data

    # -- after the update ------------------------------------------------------------------------
    def end_epoch(self, epoch: int, columns: dict[str, str], **values: float) -> dict[str, float]:
        """Reduce this epoch's statistics over all ranks and log them (rank 0); returns the row."""
        self.stats.add(**values)
        spec = {"EpRet": "dist", "EpLen": "avg", "VVals": "dist", **columns}
        reduced = reduce_stats({k: self.stats.values(k) for k in spec}, spec)
        self.step += self.epoch_steps
        self.epoch = epoch + 1
        now = time.perf_counter()
        self.steps_per_sec = self.epoch_steps / max(now - self.epoch_start, 1e-9)
        head = [k for k in reduced if k.endswith(("EpRet", "EpLen", "VVals"))]
        row = {k: reduced[k] for k in head}
        row["TotalEnvInteracts"] = self.step
        row.update({k: v for k, v in reduced.items() if k not in row})
        row["Time"] = now - self.start
        row["StepsPerSec"] = self.steps_per_sec
        row.update(self.timer.summary())
        others = gather_objects(self.other_episodes)
        self.other_episodes = []
        if self.rank == 0:
            for other_rank, episodes in enumerate(others[1:], start=1):
                for step, ret, length in episodes:
                    self.run.episode(step, ret, length, rank=other_rank)
            self.run.epoch(self.epoch, self.step, row)
            self.run.scalars({k: row[k] for k in (*columns, "AverageEpRet", "StepsPerSec")
                              if k in row and np.isfinite(row[k])}, self.step)
            self.run.set_progress(step=self.step, epoch=self.epoch, steps_per_sec=self.steps_per_sec)
        self.stats.clear()
        self.timer.reset()
        return row

    def checkpoint(self, optimizers: dict, *, force: bool = False) -> None:
        """Every rank's generators go to rank 0, which writes the checkpoint after this epoch's records."""
        if not (force or self.epoch % max(1, self.cfg.save_freq) == 0):
            return
        states = gather_objects(training_state({"train": self.rollout.envs}, time.perf_counter() - self.start))
        if self.rank == 0:
            self.run.flush()
            extra = {"ranks": states} if self.world > 1 else {}
            save_checkpoint(self.run.run_dir, algo=self.algo, config=self.config, step=self.step, epoch=self.epoch,
                            modules={"ac": self.ac}, optimizers=optimizers, resume={**states[0], **extra})

    def resume(self, checkpoint: dict, optimizers: dict) -> None:
        """Continue from `checkpoint`: its networks, optimizers, counters and this rank's generators."""
        ranks = checkpoint.get("ranks") or [checkpoint]
        if len(ranks) != self.world:
            raise ResumeError(f"the checkpoint was written by {len(ranks)} process(es); resume it with --nproc "
                              f"{len(ranks)}")
        restore_networks(checkpoint, {"ac": self.ac}, optimizers)
        self.step, self.epoch = int(checkpoint["step"]), int(checkpoint["epoch"])
        self.start = time.perf_counter() - float(checkpoint.get("elapsed", 0.0))
        restore_training_state(ranks[self.rank], {"train": self.rollout.envs})
        self.rollout.restart()
        if self.rank == 0:
            self.run.set_progress(step=self.step, epoch=self.epoch)
            self.run.event(f"resumed from the checkpoint at step {self.step:,} (epoch {self.epoch}); the "
                           f"environments start fresh episodes")

    def close(self, optimizers: dict) -> None:
        """Final checkpoint; with several processes, record each rank's parameter checksum."""
        self.checkpoint(optimizers, force=True)
        checksums = gather_objects(param_checksum(self.ac))
        if self.rank == 0:
            if self.world > 1:
                same = len(set(checksums)) == 1
                self.run.log("event", message="parameters identical on all ranks" if same
                             else "parameters differ between ranks", level="info" if same else "error",
                             param_checksums=checksums)
            if self.stopped:
                self.run.event(f"stopped on request at step {self.step}; checkpoint saved")
        self.rollout.close()
