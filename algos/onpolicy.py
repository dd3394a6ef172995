"""What VPG, PPO and TRPO share: actor-critic networks, rollouts with GAE, data-parallel helpers.

* ``MLPActorCritic``: a categorical policy for Discrete actions, a diagonal Gaussian with a
  state-independent log-std (initialised to -0.5) for Box actions, and a value network.
* ``Rollout``: steps ``num_envs`` environments (gymnasium.vector, same-step autoreset) for one epoch,
  logs episodes, then computes GAE-lambda advantages and rewards-to-go per environment. An episode
  that ends by truncation (a time limit, ``max_ep_len``) or by the epoch cut-off bootstraps from the
  value of the state it stopped in; only termination counts as a zero-value end. Environments keep
  running across epochs, so long episodes are not cut short by the epoch size.
* Data parallelism the way Spinning Up used MPI, on torch.distributed: parameters broadcast from
  rank 0 at start, gradients averaged with all_reduce, statistics reduced over all ranks. With one
  process every helper is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from spintui.algos.config import config_to_dict
from spintui.algos.core import EpochStats, PhaseTimer, mlp, resolve_device, save_checkpoint, set_seed, set_threads
from spintui.algos.envs import make_env

# --------------------------------------------------------------------------------------------------
# Actor-critic


def forward_layers(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """net(x) minus nn.Module's per-call hook handling: several microseconds per layer, paid on
    every env step when acting one observation at a time."""
    for layer in net:
        x = layer.forward(x)
    return x


class MLPCategoricalActor(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes, activation):
        super().__init__()
        self.logits_net = mlp([obs_dim, *hidden_sizes, n_actions], activation)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits_net(obs), validate_args=False)

    @torch.inference_mode()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        # Gumbel-max: argmax(logits + Gumbel noise) is an exact categorical sample, and several times
        # cheaper per env step than building a Categorical or calling multinomial.
        logits = forward_layers(self.logits_net, obs)
        return (logits - torch.empty_like(logits).exponential_().log()).argmax(-1)

    @torch.no_grad()
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_net(obs).argmax(-1)


class MLPGaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes, activation):
        super().__init__()
        self.log_std = nn.Parameter(torch.full((act_dim,), -0.5))
        self.mu_net = mlp([obs_dim, *hidden_sizes, act_dim], activation)

    def distribution(self, obs: torch.Tensor) -> Independent:
        # Independent(..., 1): log_prob, entropy and KL sum over action dimensions.
        return Independent(Normal(self.mu_net(obs), self.log_std.exp(), validate_args=False), 1,
                           validate_args=False)

    @torch.inference_mode()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        mu = forward_layers(self.mu_net, obs)
        return mu + self.log_std.exp() * torch.randn_like(mu)

    @torch.no_grad()
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mu_net(obs)


class MLPActorCritic(nn.Module):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden_sizes=(64, 64),
                 activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        obs_dim = int(np.prod(observation_space.shape))
        if isinstance(action_space, gym.spaces.Discrete):
            self.pi = MLPCategoricalActor(obs_dim, int(action_space.n), hidden_sizes, activation)
        elif isinstance(action_space, gym.spaces.Box):
            self.pi = MLPGaussianActor(obs_dim, int(np.prod(action_space.shape)), hidden_sizes, activation)
        else:
            raise ValueError(f"on-policy algorithms support Box or Discrete actions, got {action_space}")
        self.v = mlp([obs_dim, *hidden_sizes, 1], activation)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)


def build_actor_critic(env: gym.Env, hidden_sizes, device) -> MLPActorCritic:
    space_obs = getattr(env, "single_observation_space", env.observation_space)
    space_act = getattr(env, "single_action_space", env.action_space)
    return MLPActorCritic(space_obs, space_act, tuple(hidden_sizes)).to(device)


def deterministic_policy(ac: MLPActorCritic, action_space: gym.Space, device) -> Callable:
    """obs -> action with the mean action (Box, clipped to bounds) or the most likely one (Discrete)."""
    ac.eval()
    box = isinstance(action_space, gym.spaces.Box)

    def act(obs):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
        a = ac.pi.mode(x).cpu().numpy()
        if box:
            return np.clip(a, action_space.low, action_space.high).astype(action_space.dtype)
        return int(a) if a.ndim == 0 else a

    return act


def load_actor_critic(checkpoint: dict, env: gym.Env, device) -> MLPActorCritic:
    ac = build_actor_critic(env, checkpoint["config"]["hidden_sizes"], device)
    ac.load_state_dict(checkpoint["modules"]["ac"])
    return ac


# --------------------------------------------------------------------------------------------------
# GAE


def gae_advantages(rew: np.ndarray, val: np.ndarray, ended: np.ndarray, end_val: np.ndarray,
                   last_val: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE-lambda advantages and rewards-to-go for arrays shaped [steps, envs].

    ``ended[t]`` marks an episode that ended at step t; ``end_val[t]`` is then the value to bootstrap
    from: 0 after termination, V(final observation) after truncation. ``last_val`` is V(s) of the
    state each env is in after the last step (the epoch cut-off bootstrap).
    """
    steps = rew.shape[0]
    adv = np.zeros_like(rew)
    ret = np.zeros_like(rew)
    next_adv = np.zeros_like(last_val)
    next_ret = last_val
    next_val = last_val
    for t in reversed(range(steps)):
        cont = 1.0 - ended[t]
        boot = np.where(ended[t], end_val[t], next_val)
        delta = rew[t] + gamma * boot - val[t]
        next_adv = adv[t] = delta + gamma * lam * cont * next_adv
        next_ret = ret[t] = rew[t] + gamma * np.where(ended[t], end_val[t], next_ret)
        next_val = val[t]
    return adv, ret


# --------------------------------------------------------------------------------------------------
# Rollouts


def make_vector_env(env_id: str, num_envs: int, max_ep_len: int) -> gym.vector.SyncVectorEnv:
    def make_one():
        # An extra TimeLimit: episodes end at min(the env's own limit, max_ep_len), as truncations.
        return gym.wrappers.TimeLimit(make_env(env_id), max_episode_steps=max_ep_len)

    return gym.vector.SyncVectorEnv([make_one for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, copy=False)


class Rollout:
    """Runs `num_envs` environments and keeps one epoch of experience ([steps, envs] arrays)."""

    def __init__(self, env_id: str, num_envs: int, steps_per_env: int, max_ep_len: int, seed: int, device):
        self.envs = make_vector_env(env_id, num_envs, max_ep_len)
        self.obs, _ = self.envs.reset(seed=seed)  # env i gets seed + i
        self.envs.action_space.seed(seed)
        self.envs.observation_space.seed(seed)
        self.device = device
        self.steps, self.num_envs = steps_per_env, num_envs
        space = self.envs.single_action_space
        self.box = isinstance(space, gym.spaces.Box)
        self.low, self.high = (space.low, space.high) if self.box else (None, None)
        obs_shape = self.envs.single_observation_space.shape
        act_shape = space.shape if self.box else ()
        self.obs_buf = np.zeros((steps_per_env, num_envs, *obs_shape), dtype=np.float32)
        self.act_buf = np.zeros((steps_per_env, num_envs, *act_shape), dtype=np.float32 if self.box else np.int64)
        self.rew_buf = np.zeros((steps_per_env, num_envs), dtype=np.float32)
        self.ended_buf = np.zeros((steps_per_env, num_envs), dtype=bool)
        self.end_val_buf = np.zeros((steps_per_env, num_envs), dtype=np.float32)
        self.truncated_obs: list[tuple[int, int, np.ndarray]] = []  # (t, env, final obs) to bootstrap from
        self.ep_ret = np.zeros(num_envs)
        self.ep_len = np.zeros(num_envs, dtype=np.int64)

    def collect(self, ac: MLPActorCritic, on_episode: Callable[[int, float, int], None],
                should_stop: Callable[[int], bool]) -> bool:
        """Fill the buffer with one epoch of steps; False if `should_stop(t)` cut it short."""
        self.truncated_obs.clear()
        self.ended_buf[:] = False
        self.end_val_buf[:] = 0.0
        for t in range(self.steps):
            if should_stop(t):
                return False
            # Store before stepping: with copy=False the vector env reuses its observation array.
            self.obs_buf[t] = self.obs
            act = ac.pi.sample(torch.as_tensor(self.obs_buf[t], device=self.device)).cpu().numpy()
            # The env gets the action clipped to its bounds; the buffer keeps the sample for log-probs.
            env_act = np.clip(act, self.low, self.high) if self.box else act
            next_obs, rew, terminated, truncated, info = self.envs.step(env_act)
            self.act_buf[t], self.rew_buf[t] = act, rew
            self.ep_ret += rew
            self.ep_len += 1
            ended = terminated | truncated
            if ended.any():
                self.ended_buf[t] = ended
                for i in np.flatnonzero(ended):
                    if truncated[i] and not terminated[i]:
                        self.truncated_obs.append((t, i, np.array(info["final_obs"][i], dtype=np.float32)))
                    on_episode(t, float(self.ep_ret[i]), int(self.ep_len[i]))
                self.ep_ret[ended] = 0.0
                self.ep_len[ended] = 0
            self.obs = next_obs
        return True

    @torch.no_grad()
    def finish(self, ac: MLPActorCritic, gamma: float, lam: float) -> dict[str, torch.Tensor]:
        """Values, log-probs of the stored actions, normalized advantages and returns, flattened."""
        steps, n = self.steps, self.num_envs
        obs = torch.as_tensor(self.obs_buf.reshape(steps * n, *self.obs_buf.shape[2:]), device=self.device)
        act = torch.as_tensor(self.act_buf.reshape(steps * n, *self.act_buf.shape[2:]), device=self.device)
        # Parameters do not change during a rollout, so one batched pass gives the same values and
        # log-probs as computing them step by step, at a fraction of the cost.
        val = ac.value(obs)
        logp = ac.pi.distribution(obs).log_prob(act)
        last_val = ac.value(torch.as_tensor(self.obs.astype(np.float32), device=self.device)).cpu().numpy()
        if self.truncated_obs:
            final = torch.as_tensor(np.stack([o for _, _, o in self.truncated_obs]).astype(np.float32),
                                    device=self.device)
            final_val = ac.value(final).cpu().numpy()
            for (t, i, _), v in zip(self.truncated_obs, final_val):
                self.end_val_buf[t, i] = v
        val_np = val.cpu().numpy().reshape(steps, n)
        adv, ret = gae_advantages(self.rew_buf, val_np, self.ended_buf, self.end_val_buf, last_val, gamma, lam)
        adv_mean, adv_std = global_mean_std(adv)
        adv = (adv - adv_mean) / (adv_std + 1e-8)

        def flat(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x.reshape(steps * n), dtype=torch.float32, device=self.device)

        return {"obs": obs, "act": act, "ret": flat(ret), "adv": flat(adv), "logp": logp, "val": val}

    def close(self) -> None:
        self.envs.close()


# --------------------------------------------------------------------------------------------------
# Data parallelism (torch.distributed; every helper is a no-op with one process)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_device(device: torch.device, requested: str = "auto") -> torch.device:
    """One GPU per process on a node: cuda:LOCAL_RANK (NCCL cannot share a GPU between ranks)."""
    if device.type == "cuda" and world_size() > 1:
        index = int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            if requested == "auto":
                return torch.device("cpu")
            raise ValueError(f"--device cuda with more processes per node than GPUs "
                             f"({torch.cuda.device_count()}); use --device cpu or fewer processes")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def sync_params(module: nn.Module) -> None:
    """Every rank starts from rank 0's parameters."""
    if world_size() > 1:
        for p in module.parameters():
            dist.broadcast(p.data, src=0)


def average_gradients(params) -> None:
    """Average gradients over ranks, one all_reduce over a flat buffer."""
    n = world_size()
    if n == 1:
        return
    params = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def average_tensor(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor (TRPO's gradients and Hessian-vector products, KL, losses)."""
    if world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= world_size()
    return x


def average_scalar(x: float) -> float:
    if world_size() == 1:
        return float(x)
    return float(average_tensor(torch.tensor([float(x)], dtype=torch.float64))[0])


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (a stop request seen by one process)."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0] > 0)


def global_mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if world_size() == 1:
        return float(x.mean()), float(x.std())
    t = torch.tensor([x.sum(), (x * x).sum(), x.size], dtype=torch.float64)
    dist.all_reduce(t)
    mean = t[0] / t[2]
    return float(mean), float(torch.sqrt(torch.clamp(t[1] / t[2] - mean * mean, min=0.0)))


def reduce_stats(values: dict[str, list[float]], spec: dict[str, str]) -> dict[str, float]:
    """Spinning Up's columns over all ranks' values. `spec` maps a name to 'avg' (one column) or
    'dist' (Average/Std/Max/Min). Every column is always present (NaN when no rank had a value),
    so progress.txt keeps the same columns from the first epoch on."""
    rows = []
    for name in spec:
        x = np.asarray(values.get(name, []), dtype=np.float64)
        rows.append([x.sum(), (x * x).sum(), x.size,
                     x.min() if x.size else np.inf, -x.max() if x.size else np.inf])
    t = torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)
    if world_size() > 1:
        sums, mins = t[:, :3].contiguous(), t[:, 3:].contiguous()
        dist.all_reduce(sums)
        dist.all_reduce(mins, op=dist.ReduceOp.MIN)  # max is -min of the negated values
        t = torch.cat([sums, mins], dim=1)
    out: dict[str, float] = {}
    for (name, kind), (s, sq, n, lo, neg_hi) in zip(spec.items(), t.tolist()):
        mean = s / n if n else float("nan")
        if kind == "avg":
            out[name] = mean
            continue
        std = float(np.sqrt(max(sq / n - mean * mean, 0.0))) if n else float("nan")
        out.update({f"Average{name}": mean, f"Std{name}": std,
                    f"Max{name}": -neg_hi if n else float("nan"), f"Min{name}": lo if n else float("nan")})
    return out


def gather_objects(obj) -> list:
    """Every rank's `obj`, on every rank."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def param_checksum(module: nn.Module) -> str:
    """SHA-256 of all parameters' bytes: equal on every rank when data parallelism is sound."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def split_steps(steps_per_epoch: int, num_envs: int) -> int:
    """Steps per environment in this process: steps_per_epoch / (processes x envs), at least 1."""
    return max(1, steps_per_epoch // (world_size() * num_envs))


# --------------------------------------------------------------------------------------------------
# The parts of a training run that do not depend on the algorithm


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
        self.rollout = Rollout(cfg.env, num_envs, steps_per_env, cfg.max_ep_len, self.seed, self.device)
        self.ac = build_actor_critic(self.rollout.envs, cfg.hidden_sizes, self.device)
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
            run.event(f"{algo}: {self.world} process(es) x {num_envs} env(s), {self.epoch_steps} steps per epoch, "
                      f"{self.epochs} epochs, device {self.device}")

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
        if self.rank == 0 and (force or self.epoch % max(1, self.cfg.save_freq) == 0):
            save_checkpoint(self.run.run_dir, algo=self.algo, config=self.config, step=self.step,
                            epoch=self.epoch, modules={"ac": self.ac}, optimizers=optimizers)

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
