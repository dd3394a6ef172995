"""Hyperparameters of the six algorithms: one typed options class each, with Spinning Up's defaults.

Pure dataclasses (no torch import), so `spintui train ALGO --help` builds quickly from them. Each
field's help, range and choices (spintui.options) make its command-line option, its `--config`
TOML key (dashes or underscores) and its check; `run.json` stores the resolved values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spintui.errors import ConfigError
from spintui.options import (AT_LEAST_1, LEARNING_RATE, NON_NEGATIVE, POSITIVE, SEED, UNIT, Range, build,
                             option, to_dict)

Device = Literal["auto", "cpu", "cuda"]
UpdatePath = Literal["auto", "native", "compile", "torch"]
SaveBuffer = Literal["auto", "always", "never"]
SPARSE_BLOCK_SIZES = (16, 32, 64, 128)  # the block sizes spintui.kernels supports (a test keeps them equal)


def block_sparse_text(density: float, block: int) -> str:
    """How headers and events name a run's block-sparse hidden layers: 'block-sparse d0.5 b32'."""
    return f"block-sparse d{density:g} b{block}"


@dataclass
class RunConfig:
    """What every algorithm shares: the environment, seeding and hardware."""

    env: str = option("", "Gymnasium environment id, e.g. Pendulum-v1 or CartPole-v1; "
                      "package.module:EnvName-v0 imports the module (which registers the id) first.")
    env_kwargs: dict[str, Any] = option({}, "Keyword arguments of the environment, e.g. g=9.81 (values are "
                                        "numbers, true/false or text; a [env_kwargs] table in TOML).",
                                        metavar="KEY=VALUE,...", default_text="none")
    seed: int = option(0, "Random seed for torch, numpy, the environment and its action space.", range=SEED)
    steps: int | None = option(None, "Total environment steps; overrides epochs x steps_per_epoch.",
                               range=AT_LEAST_1, default_text="epochs x steps_per_epoch")
    device: Device = option("auto", "Where networks run: auto (cuda if available), cpu or cuda.")
    threads: int | None = option(None, "torch CPU threads.", range=Range(1, 1024),
                                 default_text="torch's choice for a run of its own; in an "
                                 "experiment, the cores shared among the runs at once")
    tensorboard: Path | None = option(None, "Mirror the run into TensorBoard event files under DIR/RUN while "
                                      "it trains (needs the tensorboard extra).", metavar="DIR", grid=False)
    block_density: float = option(1.0, "Fraction of blocks kept in every hidden-to-hidden weight matrix (actor, "
                                  "critics, value function), each then a BlockSparseLinear with a random layout "
                                  "drawn from --seed, at least one block in every block-row and block-column; "
                                  "input and output layers stay dense; DDPG, TD3 and SAC then take the PyTorch "
                                  "update (the compiled one is dense only). 1 keeps every layer dense.",
                                  range=Range(0, 1, lo_open=True), default_text="1 (dense)")
    block_size: int = option(32, "Block size of the block-sparse hidden layers (with --block-density below 1): "
                             "16, 32, 64 or 128, dividing every hidden size.", range=AT_LEAST_1)
    trace: str | None = option(None, "Capture update block N, or blocks N:M (from 1), with torch.profiler: a "
                               "Chrome/Perfetto trace (trace-*.json.gz) and a kernel table in the run.",
                               metavar="N|N:M", grid=False, default_text="off")

    def total_steps(self) -> int:
        return int(self.steps) if self.steps is not None else self.epochs * self.steps_per_epoch  # type: ignore[attr-defined]

    def check(self) -> None:
        if not self.env:
            raise ConfigError("--env is required (a Gymnasium environment id, e.g. Pendulum-v1)")
        if self.tensorboard is not None:  # run.json records where, whatever directory a later command runs in
            self.tensorboard = self.tensorboard.absolute()
        self.check_block_sparse()
        if self.trace is not None:
            from spintui.algos.trace import check_trace

            self.trace = check_trace(self.trace, self.update_blocks())

    def update_blocks(self) -> int:
        """How many update blocks the run does (what --trace counts)."""
        raise NotImplementedError

    @property
    def block_sparse(self) -> bool:
        return self.block_density < 1.0

    def check_block_sparse(self) -> None:
        if self.block_size not in SPARSE_BLOCK_SIZES:
            raise ConfigError(f"--block-size must be one of {', '.join(map(str, SPARSE_BLOCK_SIZES))}, "
                              f"got {self.block_size}")
        if not self.block_sparse:
            return
        sizes = tuple(self.hidden_sizes)  # type: ignore[attr-defined]
        shown = ",".join(map(str, sizes))
        if len(sizes) < 2:
            raise ConfigError(f"--block-density applies to hidden-to-hidden layers, and --hidden-sizes {shown} "
                              f"has none: give at least two hidden sizes")
        bad = [h for h in sizes if h % self.block_size]
        if bad:
            raise ConfigError(f"--block-size {self.block_size} must divide every hidden size, got --hidden-sizes "
                              f"{shown} ({bad[0]} is not a multiple of {self.block_size})")


# --- off-policy ------------------------------------------------------------------------------------


@dataclass
class OffPolicyConfig(RunConfig):
    hidden_sizes: tuple[int, ...] = option((256, 256), "Hidden layer sizes of actor and critics (ReLU).",
                                           range=Range(1, 65536))
    gamma: float = option(0.99, "Discount factor.", range=UNIT)
    polyak: float = option(0.995, "Target networks: targ <- polyak * targ + (1 - polyak) * online.", range=UNIT)
    batch_size: int = option(100, "Minibatch size for each gradient step.", range=AT_LEAST_1)
    replay_size: int = option(1_000_000, "Replay buffer capacity in transitions.", range=AT_LEAST_1)
    start_steps: int = option(10_000, "Steps of uniform random actions before the policy acts.",
                              range=NON_NEGATIVE)
    update_after: int = option(1000, "Env steps collected before the first update.", range=NON_NEGATIVE)
    update_every: int = option(50, "Update every N env steps, with N gradient steps (one per env step).",
                               range=AT_LEAST_1)
    steps_per_epoch: int = option(4000, "Env steps per epoch (one test, log line and checkpoint each).",
                                  range=AT_LEAST_1)
    epochs: int = option(100, "Number of epochs.", range=AT_LEAST_1)
    max_ep_len: int = option(1000, "Cut episodes at this length (treated as truncation, not termination).",
                             range=AT_LEAST_1)
    num_test_episodes: int = option(10, "Deterministic test episodes after each epoch.", range=NON_NEGATIVE)
    save_freq: int = option(1, "Checkpoint every N epochs (and always at the end).", range=AT_LEAST_1)
    update: UpdatePath = option("auto", "Gradient steps: native (compiled C on the CPU), compile (torch.compile "
                                "of the functional update; on CUDA replayed as CUDA graphs), torch (eager "
                                "PyTorch), or auto (compile on CUDA, native on the CPU, else torch).")
    save_buffer: SaveBuffer = option("auto", "Save the replay buffer beside each checkpoint, so that --resume "
                                     "continues with it: always, never, or auto (when it takes under 1 GiB "
                                     "at capacity).")

    def check(self) -> None:
        super().check()
        if self.block_sparse and self.update in ("native", "compile"):
            raise ConfigError(f"--update {self.update} runs dense layers only, and --block-density {self.block_density:g} "
                              f"makes the hidden layers block-sparse: use --update auto or torch")

    def update_blocks(self) -> int:
        # Spinning Up's schedule: an update block at every step t >= update_after with t % update_every == 0.
        last, first = self.total_steps() - 1, -(-self.update_after // self.update_every)
        return max(0, last // self.update_every - first + 1) if last >= self.update_after else 0


@dataclass
class DDPGConfig(OffPolicyConfig):
    pi_lr: float = option(1e-3, "Actor learning rate (Adam).", range=LEARNING_RATE)
    q_lr: float = option(1e-3, "Critic learning rate (Adam).", range=LEARNING_RATE)
    act_noise: float = option(0.1, "Std of Gaussian exploration noise added to actions (action units).",
                              range=NON_NEGATIVE)


@dataclass
class TD3Config(DDPGConfig):
    target_noise: float = option(0.2, "Std of target policy smoothing noise (action units).", range=NON_NEGATIVE)
    noise_clip: float = option(0.5, "Clip target policy smoothing noise to +-noise_clip.", range=NON_NEGATIVE)
    policy_delay: int = option(2, "Update actor and targets once per this many critic updates.",
                               range=AT_LEAST_1)


@dataclass
class SACConfig(OffPolicyConfig):
    lr: float = option(1e-3, "Learning rate of actor and critics (Adam).", range=LEARNING_RATE)
    alpha: float | Literal["auto"] = option(0.2, "Entropy coefficient, or auto to learn it toward "
                                            "-dim(A) entropy.", range=NON_NEGATIVE)


# --- on-policy -------------------------------------------------------------------------------------


@dataclass
class OnPolicyConfig(RunConfig):
    hidden_sizes: tuple[int, ...] = option((64, 64), "Hidden layer sizes of policy and value nets (tanh).",
                                           range=Range(1, 65536))
    steps_per_epoch: int = option(4000, "Env steps per epoch (one rollout and one update), over all "
                                  "processes.", range=AT_LEAST_1)
    epochs: int = option(50, "Number of epochs.", range=AT_LEAST_1)
    gamma: float = option(0.99, "Discount factor.", range=UNIT)
    lam: float = option(0.97, "GAE lambda.", range=UNIT)
    vf_lr: float = option(1e-3, "Value function learning rate (Adam).", range=LEARNING_RATE)
    train_v_iters: int = option(80, "Value function gradient steps per epoch.", range=AT_LEAST_1)
    max_ep_len: int = option(1000, "Cut episodes at this length (treated as truncation, not termination).",
                             range=AT_LEAST_1)
    save_freq: int = option(1, "Checkpoint every N epochs (and always at the end).", range=AT_LEAST_1)
    nproc: int = option(1, "Data-parallel processes (torch.distributed: gloo on CPU, NCCL on CUDA).",
                        range=Range(1, 1024))
    num_envs: int = option(1, "Environments stepped together per process (gymnasium.vector); each collects "
                           "steps_per_epoch / (nproc x num_envs) steps per epoch.", range=Range(1, 4096))

    def update_blocks(self) -> int:
        # One update (policy, then value function) per epoch; as onpolicy.Session counts epochs.
        return max(1, -(-self.total_steps() // min(self.steps_per_epoch, self.total_steps())))

    def check(self) -> None:
        super().check()
        if self.steps_per_epoch < self.nproc * self.num_envs:
            raise ConfigError(f"--steps-per-epoch must be at least nproc x num-envs = "
                              f"{self.nproc * self.num_envs}, got {self.steps_per_epoch}")


@dataclass
class VPGConfig(OnPolicyConfig):
    pi_lr: float = option(3e-4, "Policy learning rate (Adam); one policy step per epoch.", range=LEARNING_RATE)


@dataclass
class PPOConfig(OnPolicyConfig):
    clip_ratio: float = option(0.2, "PPO clip epsilon.", range=Range(0, 1, lo_open=True, hi_open=True))
    pi_lr: float = option(3e-4, "Policy learning rate (Adam).", range=LEARNING_RATE)
    train_pi_iters: int = option(80, "Max policy gradient steps per epoch.", range=AT_LEAST_1)
    target_kl: float = option(0.01, "Stop policy updates early once approx KL > 1.5 x target_kl.", range=POSITIVE)


@dataclass
class TRPOConfig(OnPolicyConfig):
    delta: float = option(0.01, "KL-divergence limit of each policy step.", range=POSITIVE)
    damping_coeff: float = option(0.1, "Damping added to Hessian-vector products.", range=NON_NEGATIVE)
    cg_iters: int = option(10, "Conjugate gradient iterations for the natural gradient.", range=AT_LEAST_1)
    backtrack_iters: int = option(10, "Max backtracking line search steps.", range=AT_LEAST_1)
    backtrack_coeff: float = option(0.8, "Step shrink factor of the line search.",
                                    range=Range(0, 1, lo_open=True, hi_open=True))


def make_config(algo: str, values: dict) -> RunConfig:
    """A checked config of `algo` from keys (dashes or underscores) and raw values."""
    from spintui.algos.registry import algorithm

    return build(algorithm(algo).config, values, what=algo)


def config_to_dict(cfg: RunConfig) -> dict:
    return to_dict(cfg)


def config_from_manifest(manifest: dict) -> RunConfig:
    """The resolved config a run was started with (as stored in run.json)."""
    return make_config(manifest["algo"], manifest.get("config", {}))
