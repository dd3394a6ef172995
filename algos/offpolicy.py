"""What DDPG, TD3 and SAC share: a replay buffer, stacked critics, and Spinning Up's off-policy loop.

The loop (`run_off_policy`) is the one in Spinning Up's ddpg.py / td3.py / sac.py, which is the
same in all three: random actions for `start_steps`, then the agent's noisy policy; from
`update_after`, every `update_every` env steps run `update_every` gradient steps; after each epoch
test the deterministic policy, log a row and save a checkpoint. Each algorithm module supplies an
agent with `act(obs, deterministic)` and `update(batch)`; everything algorithm-specific lives there.

Speed notes (why the code looks the way it does):
* The critics of DDPG/TD3/SAC are one module with stacked weights, evaluated with one `bmm` per
  hidden layer, so twin Q costs the kernel launches of a single network.
* Replay samples for a whole update block are drawn and gathered at once; logging statistics stay
  on the device and are read back once per block (no host sync inside the update loop).
* Target networks move with one `_foreach_lerp_`; Adam runs fused (or foreach) over all tensors.
* On the CPU, `--update auto` (the default) runs each block of gradient steps in compiled C
  instead (native.py, offpolicy_update.c): the same arithmetic on the same tensors, about twice as
  fast, because at these sizes the eager update's time goes to ~700 small tensor operations rather
  than to its matrix products. The eager update stays the reference and the GPU path.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.optim.adam import adam as adam_update

from spintui.algos import native
from spintui.algos.config import OffPolicyConfig, config_to_dict
from spintui.algos.core import EpochStats, PhaseTimer, resolve_device, save_checkpoint, seed_env, set_seed, set_threads

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


def action_bounds(action_space, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, center) so that a tanh output in [-1, 1] maps onto [low, high]."""
    low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError(f"action space {action_space} must have finite bounds")
    return (high - low) / 2, (high + low) / 2


# --------------------------------------------------------------------------------------------------
# Replay buffer


class ReplayBuffer:
    """A preallocated ring of transitions on the device, one row per step: obs | act | rew | next_obs | done.

    `done` is gymnasium's `terminated` only: a truncated episode (time limit, max_ep_len) still
    bootstraps from its last observation. Rows are staged in host memory and copied to the device
    in one piece before sampling, so acting never waits on a small device copy.
    """

    def __init__(self, obs_dim: int, act_dim: int, size: int, device: torch.device, stage_rows: int = 1024):
        self.obs_dim, self.act_dim, self.size, self.device = obs_dim, act_dim, int(size), device
        self.width = 2 * obs_dim + act_dim + 2
        self.data = torch.zeros((self.size, self.width), dtype=torch.float32, device=device)
        self._stage = np.zeros((stage_rows, self.width), dtype=np.float32)
        self._staged = 0
        self.ptr = 0  # next row on the device
        self.count = 0  # rows on the device
        o, a = obs_dim, act_dim
        self._cols = (slice(0, o), slice(o, o + a), o + a, slice(o + a + 1, 2 * o + a + 1), 2 * o + a + 1)

    def __len__(self) -> int:
        return min(self.count + self._staged, self.size)

    def store(self, obs, act, rew: float, next_obs, done: bool) -> None:
        row = self._stage[self._staged]
        c_obs, c_act, c_rew, c_next, c_done = self._cols
        row[c_obs] = obs
        row[c_act] = act
        row[c_rew] = rew
        row[c_next] = next_obs
        row[c_done] = float(done)
        self._staged += 1
        if self._staged == len(self._stage):
            self.flush()

    def flush(self) -> None:
        n = self._staged
        if n == 0:
            return
        rows = torch.from_numpy(self._stage[:n]).to(self.device, non_blocking=False)
        first = min(n, self.size - self.ptr)
        self.data[self.ptr:self.ptr + first] = rows[:first]
        if first < n:  # wrapped around the ring
            self.data[:n - first] = rows[first:]
        self.ptr = (self.ptr + n) % self.size
        self.count = min(self.count + n, self.size)
        self._staged = 0

    def sample_block(self, n_batches: int, batch_size: int) -> tuple[torch.Tensor, ...]:
        """`n_batches` minibatches drawn at once: (obs, act, rew, next_obs, done), each (n_batches, batch, ...)."""
        self.flush()
        idx = torch.randint(0, self.count, (n_batches, batch_size), device=self.device)
        block = self.data[idx]
        o, a = self.obs_dim, self.act_dim
        obs, act, rew, next_obs, done = block.split([o, a, 1, o, 1], dim=-1)
        return obs, act, rew.squeeze(-1), next_obs, done.squeeze(-1)


# --------------------------------------------------------------------------------------------------
# Networks


class QEnsemble(nn.Module):
    """`n` independent Q(s, a) MLPs with ReLU, stored as stacked weights and run as one batched network.

    forward(obs, act) -> (n, batch) Q values. Each member is initialised like torch's nn.Linear, so
    n=2 is exactly Spinning Up's q1, q2 pair, computed with one batched matmul per layer.
    """

    def __init__(self, n: int, obs_dim: int, act_dim: int, hidden_sizes):
        super().__init__()
        self.n = n
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            params.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            params.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
        self.params = nn.ParameterList(params)

    def forward(self, obs: torch.Tensor, act: torch.Tensor, params=None) -> torch.Tensor:
        return q_forward(list(self.params) if params is None else params, obs, act)


def q_forward(params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Stacked critics as a function of their parameters [W0, b0, W1, b1, ...]; W (n, in, out).

    Hidden layers are one bmm each, with the bias and ReLU applied in place. The last layer (width
    -> 1) is a multiply and a row sum: as a bmm with one output column it took about twice as long
    forward + backward on CPU (a matrix-vector product is a poor fit for a batched GEMM).
    """
    x = torch.cat([obs, act], dim=-1)
    n = params[0].shape[0]
    x = x.unsqueeze(0).expand(n, *x.shape)
    last = len(params) - 2
    for i in range(0, last, 2):
        x = torch.bmm(x, params[i]).add_(params[i + 1]).relu_()
    w_out, b_out = params[last], params[last + 1]  # (n, width, 1), (n, 1, 1)
    return (x * w_out.transpose(1, 2)).sum(-1) + b_out.view(n, 1)


class MLP(nn.Module):
    """Spinning Up's mlp() with ReLU, its weights stored (in, out) and applied with one addmm per layer.

    Same function and initialisation as a stack of nn.Linear; on CPU, x @ W with W stored (in, out)
    ran about 20% faster forward + backward than nn.Linear's x @ W.T at these sizes, and mm then an
    in-place bias add and ReLU about 10% faster than addmm then relu.
    """

    def __init__(self, sizes, output_activation=None):
        super().__init__()
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            params.append(nn.Parameter(torch.empty(fan_in, fan_out).uniform_(-bound, bound)))
            params.append(nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound)))
        self.params = nn.ParameterList(params)
        self.output_activation = output_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = list(self.params)
        last = len(params) - 2
        for i in range(0, last, 2):
            x = torch.mm(x, params[i]).add_(params[i + 1]).relu_()  # in place: no extra activations
        x = torch.addmm(params[last + 1], x, params[last])
        return x if self.output_activation is None else self.output_activation(x)


def saved_policy(checkpoint: dict, env, device="cpu", *, actor_class: type[nn.Module]) -> Callable:
    """The checkpoint's actor (built as in the agents) as obs -> its deterministic action, actor.mode(obs)."""
    device = torch.device(device)
    act_scale, act_center = action_bounds(env.action_space, device)
    actor = actor_class(env.observation_space.shape[0], env.action_space.shape[0],
                        tuple(checkpoint["config"]["hidden_sizes"]), act_scale, act_center).to(device)
    actor.load_state_dict(checkpoint["modules"]["actor"])
    actor.eval()

    @torch.inference_mode()
    def policy(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        return actor.mode(obs_t)[0].cpu().numpy()

    return policy


def frozen(module: nn.Module) -> list[torch.Tensor]:
    """Detached views of a module's parameters: they follow in-place optimizer steps but take no
    gradient (Spinning Up freezes the critics while the actor steps; this costs nothing per update)."""
    return [p.detach() for p in module.parameters()]


def target_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, polyak: float) -> None:
    """targ <- polyak * targ + (1 - polyak) * online, for all tensors in one call."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - polyak)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam over all tensors at once: fused kernels where torch has them, else foreach."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def minimize(loss: torch.Tensor, optimizer: torch.optim.Adam) -> None:
    """One Adam step on `loss`: the arithmetic of zero_grad(); loss.backward(); optimizer.step().

    Gradients come from torch.autograd.grad and go straight into torch's functional (fused) Adam on
    the optimizer's own state, so checkpoints still hold a normal Adam state_dict. For nets this
    small, Optimizer.step() and zero_grad() bookkeeping took about twice as long as the fused
    kernel itself (measured here: 468 vs 172 us per step).
    """
    group = optimizer.param_groups[0]
    params = group["params"]
    grads = torch.autograd.grad(loss, params)
    states = [optimizer.state[p] for p in params]
    if not states[0]:  # the first step creates Adam's state the usual way
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        for p in params:
            p.grad = None
        return
    beta1, beta2 = group["betas"]
    adam_update(params, list(grads), [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
                [s["step"] for s in states], foreach=group["foreach"], fused=group["fused"], amsgrad=False,
                beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=False)


# --------------------------------------------------------------------------------------------------
# The off-policy loop (Spinning Up's, with gymnasium's terminated/truncated)


def update_description(agent, device: torch.device) -> str:
    if getattr(agent, "native", None):
        return "compiled C update"
    ok, why = native.available() if device.type == "cpu" else (False, "")
    if device.type == "cpu" and not ok:
        return f"PyTorch update (compiled update unavailable: {why})"
    return "PyTorch update"


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


def run_off_policy(cfg: OffPolicyConfig, run, algo: str, make_agent: Callable) -> dict:
    """Train `make_agent(cfg, obs_space, act_space, device)` on cfg.env; returns the last epoch's stats.

    The agent provides: act(obs_numpy, deterministic) -> action numpy; update(obs, act, rew,
    next_obs, done) on one update block of stacked minibatches -> {name: tensor} statistics;
    modules() and optimizers() for checkpoints; stat_layout() naming how each statistic is logged.
    """
    device = resolve_device(cfg.device)
    # Matmuls of batch 100 through 256-wide layers gain nothing from a second CPU thread, and an
    # intra-op thread pool collapses when the cores are shared (measured here: 197 -> 9 steps/s with
    # two threads beside a test run), so one thread unless --threads says otherwise.
    set_threads(cfg.threads if cfg.threads is not None else 1)
    set_seed(cfg.seed)
    env = make_box_env(algo, cfg.env, env_kwargs=cfg.env_kwargs)
    test_env = make_box_env(algo, cfg.env, env_kwargs=cfg.env_kwargs)
    obs, _ = seed_env(env, cfg.seed)
    seed_env(test_env, cfg.seed + 1)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]

    agent = make_agent(cfg, env.observation_space, env.action_space, device)
    buffer = ReplayBuffer(obs_dim, act_dim, cfg.replay_size, device)
    total_steps = cfg.total_steps()
    config = config_to_dict(cfg)
    run.event(f"{algo} on {cfg.env}: {total_steps:,} steps on {device}, torch threads {torch.get_num_threads()}, "
              f"{update_description(agent, device)}")
    run.set_progress(step=0, total_steps=total_steps, epoch=0)

    stats, timer = EpochStats(), PhaseTimer()
    with_min_max, average_only = agent.stat_layout()
    start = epoch_start = time.perf_counter()
    epoch_start_step, epoch, last, saved_step = 0, 0, {}, -1
    ep_ret, ep_len, step = 0.0, 0, 0

    def end_epoch(step: int, epoch: int) -> dict:
        nonlocal epoch_start, epoch_start_step, saved_step
        with timer.phase("test"):
            run_test_episodes(agent, test_env, cfg, run, step, stats)
        if epoch % cfg.save_freq == 0 or step == total_steps:
            with timer.phase("checkpoint"):
                save_checkpoint(run.run_dir, algo=algo, config=config, step=step, epoch=epoch,
                                modules=agent.modules(), optimizers=agent.optimizers(), extra=agent.extra())
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
        stats.clear()
        timer.reset()
        epoch_start, epoch_start_step = time.perf_counter(), step
        return row

    for t in range(total_steps):
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
            obs, _ = env.reset()
            ep_ret, ep_len = 0.0, 0

        # Spinning Up's schedule: every update_every steps, update_every gradient steps.
        if t >= cfg.update_after and t % cfg.update_every == 0:
            with timer.phase("update"):
                batches = buffer.sample_block(cfg.update_every, cfg.batch_size)
                values = agent.update(*batches)
            with timer.phase("log"):
                values = {k: v.detach().float().cpu().numpy() for k, v in values.items()}  # one sync per block
                stats.add(**values)
                run.scalars({k: float(np.mean(v)) for k, v in values.items()}, step)
                run.set_progress(step=step, steps_per_sec=(step - epoch_start_step) / max(time.perf_counter() - epoch_start, 1e-9))

        if step % cfg.steps_per_epoch == 0 or step == total_steps:
            epoch += 1
            last = end_epoch(step, epoch)

    if run.stop_requested and saved_step != step:  # stopped mid-epoch: keep what was learned
        save_checkpoint(run.run_dir, algo=algo, config=config, step=step, epoch=epoch,
                        modules=agent.modules(), optimizers=agent.optimizers(), extra=agent.extra())
        run.event(f"stopped at step {step:,}; checkpoint saved")
    env.close()
    test_env.close()
    return last
