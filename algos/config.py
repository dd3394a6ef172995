"""Hyperparameters of the six algorithms: one typed config each, with Spinning Up's defaults.

Pure dataclasses (no torch import), so the CLI can build `spintui train ALGO --help` from them
quickly. Every field's `help` becomes its option's help line; `--config FILE.toml` supplies the
same keys (with dashes or underscores).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field, fields

from spintui.errors import ConfigError


def hp(default, help: str, **kw):
    """A hyperparameter: its default and one line of help."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunConfig:
    """What every algorithm shares: the environment, seeding and hardware."""

    env: str = hp("", "Gymnasium environment id, e.g. Pendulum-v1 or CartPole-v1.")
    seed: int = hp(0, "Random seed for torch, numpy, the environment and its action space.")
    steps: int | None = hp(None, "Total environment steps; overrides epochs x steps_per_epoch.")
    device: str = hp("auto", "Where networks run: auto (cuda if available), cpu or cuda.",
                     choices=("auto", "cpu", "cuda"))
    threads: int | None = hp(None, "torch CPU threads (default: 1 for ddpg/td3/sac, torch's choice otherwise).")

    def total_steps(self) -> int:
        return int(self.steps) if self.steps is not None else self.epochs * self.steps_per_epoch  # type: ignore[attr-defined]


# --- off-policy ------------------------------------------------------------------------------------


@dataclass
class OffPolicyConfig(RunConfig):
    hidden_sizes: tuple[int, ...] = hp((256, 256), "Hidden layer sizes of actor and critics (ReLU).")
    gamma: float = hp(0.99, "Discount factor.")
    polyak: float = hp(0.995, "Target networks: targ <- polyak * targ + (1 - polyak) * online.")
    batch_size: int = hp(100, "Minibatch size for each gradient step.")
    replay_size: int = hp(1_000_000, "Replay buffer capacity in transitions.")
    start_steps: int = hp(10_000, "Steps of uniform random actions before the policy acts.")
    update_after: int = hp(1000, "Env steps collected before the first update.")
    update_every: int = hp(50, "Update every N env steps, with N gradient steps (one per env step).")
    steps_per_epoch: int = hp(4000, "Env steps per epoch (one test, log line and checkpoint each).")
    epochs: int = hp(100, "Number of epochs.")
    max_ep_len: int = hp(1000, "Cut episodes at this length (treated as truncation, not termination).")
    num_test_episodes: int = hp(10, "Deterministic test episodes after each epoch.")
    save_freq: int = hp(1, "Checkpoint every N epochs (and always at the end).")
    update: str = hp("auto", "Gradient steps: native (compiled C on the CPU), torch (eager PyTorch), "
                     "or auto (native where it can run, else torch).", choices=("auto", "native", "torch"))


@dataclass
class DDPGConfig(OffPolicyConfig):
    pi_lr: float = hp(1e-3, "Actor learning rate (Adam).")
    q_lr: float = hp(1e-3, "Critic learning rate (Adam).")
    act_noise: float = hp(0.1, "Std of Gaussian exploration noise added to actions (action units, as Spinning Up).")


@dataclass
class TD3Config(DDPGConfig):
    target_noise: float = hp(0.2, "Std of target policy smoothing noise (action units).")
    noise_clip: float = hp(0.5, "Clip target policy smoothing noise to +-noise_clip.")
    policy_delay: int = hp(2, "Update actor and targets once per this many critic updates.")


@dataclass
class SACConfig(OffPolicyConfig):
    lr: float = hp(1e-3, "Learning rate of actor and critics (Adam).")
    alpha: str = hp("0.2", "Entropy coefficient: a number, or 'auto' to learn it toward -dim(A) entropy.")


# --- on-policy -------------------------------------------------------------------------------------


@dataclass
class OnPolicyConfig(RunConfig):
    hidden_sizes: tuple[int, ...] = hp((64, 64), "Hidden layer sizes of policy and value nets (tanh).")
    steps_per_epoch: int = hp(4000, "Env steps per epoch (one rollout and one update), over all processes.")
    epochs: int = hp(50, "Number of epochs.")
    gamma: float = hp(0.99, "Discount factor.")
    lam: float = hp(0.97, "GAE lambda.")
    vf_lr: float = hp(1e-3, "Value function learning rate (Adam).")
    train_v_iters: int = hp(80, "Value function gradient steps per epoch.")
    max_ep_len: int = hp(1000, "Cut episodes at this length (treated as truncation, not termination).")
    save_freq: int = hp(1, "Checkpoint every N epochs (and always at the end).")
    nproc: int = hp(1, "Data-parallel processes (torch.distributed: gloo on CPU, NCCL on CUDA).")
    num_envs: int = hp(1, "Environments stepped together per process (gymnasium.vector); each collects "
                          "steps_per_epoch / (nproc x num_envs) steps per epoch.")


@dataclass
class VPGConfig(OnPolicyConfig):
    pi_lr: float = hp(3e-4, "Policy learning rate (Adam); one policy step per epoch.")


@dataclass
class PPOConfig(OnPolicyConfig):
    clip_ratio: float = hp(0.2, "PPO clip epsilon.")
    pi_lr: float = hp(3e-4, "Policy learning rate (Adam).")
    train_pi_iters: int = hp(80, "Max policy gradient steps per epoch.")
    target_kl: float = hp(0.01, "Stop policy updates early once approx KL > 1.5 x target_kl.")


@dataclass
class TRPOConfig(OnPolicyConfig):
    delta: float = hp(0.01, "KL-divergence limit of each policy step.")
    damping_coeff: float = hp(0.1, "Damping added to Hessian-vector products.")
    cg_iters: int = hp(10, "Conjugate gradient iterations for the natural gradient.")
    backtrack_iters: int = hp(10, "Max backtracking line search steps.")
    backtrack_coeff: float = hp(0.8, "Step shrink factor of the line search.")


ALGO_CONFIGS: dict[str, type[RunConfig]] = {
    "vpg": VPGConfig,
    "trpo": TRPOConfig,
    "ppo": PPOConfig,
    "ddpg": DDPGConfig,
    "td3": TD3Config,
    "sac": SACConfig,
}

ALGO_SUMMARIES = {
    "vpg": "Vanilla policy gradient with GAE (on-policy).",
    "trpo": "Trust region policy optimization (on-policy).",
    "ppo": "Proximal policy optimization, clipped objective (on-policy).",
    "ddpg": "Deep deterministic policy gradient (off-policy, continuous actions).",
    "td3": "Twin delayed DDPG (off-policy, continuous actions).",
    "sac": "Soft actor-critic (off-policy, continuous actions).",
}


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def field_type(cls: type, f: dataclasses.Field) -> typing.Any:
    return _type_hints(cls)[f.name]


def coerce(cls: type, name: str, value: typing.Any) -> typing.Any:
    """Convert `value` (from TOML or the command line) to the field's type, or raise ConfigError."""
    f = {f.name: f for f in fields(cls)}[name]
    tp = field_type(cls, f)
    args = typing.get_args(tp)
    optional = type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        if typing.get_origin(tp) is tuple:
            if isinstance(value, str):
                items = [v for v in value.replace(" ", "").split(",") if v]
            else:
                items = list(value)
            out = tuple(int(v) for v in items)
            if not out or any(v <= 0 for v in out):
                raise ValueError
            value = out
        elif tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            value = bool(value)
        elif tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        elif tp is float:
            value = float(value)
        elif tp is str:
            value = str(value)
    except (TypeError, ValueError):
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
            tp, "comma-separated positive integers, e.g. 256,256"
        )
        raise ConfigError(f"{name.replace('_', '-')} must be {kind}, got {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}")
    return value


def make_config(algo: str, values: dict) -> RunConfig:
    """Build and validate a config from keys (dashes or underscores) and raw values."""
    cls = ALGO_CONFIGS[algo]
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in names:
            import difflib

            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
            raise ConfigError(
                f"{algo} has no setting {key!r}{hint}; accepted: {', '.join(n.replace('_', '-') for n in names)}"
            )
        kwargs[name] = coerce(cls, name, value)
    cfg = cls(**kwargs)
    validate(algo, cfg)
    return cfg


def validate(algo: str, cfg: RunConfig) -> None:
    positive = ["steps_per_epoch", "epochs", "max_ep_len"]
    positive += [n for n in ("batch_size", "replay_size", "update_every", "train_v_iters", "policy_delay",
                             "cg_iters", "nproc", "num_envs") if hasattr(cfg, n)]
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.steps is not None and cfg.steps <= 0:
        raise ConfigError(f"steps must be positive, got {cfg.steps}")
    if cfg.threads is not None and cfg.threads <= 0:
        raise ConfigError(f"threads must be positive, got {cfg.threads}")
    for name in ("gamma", "polyak", "lam"):
        if hasattr(cfg, name) and not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {getattr(cfg, name)}")
    if isinstance(cfg, SACConfig) and cfg.alpha != "auto":
        try:
            if float(cfg.alpha) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"alpha must be a non-negative number or 'auto', got {cfg.alpha!r}") from None


def config_to_dict(cfg: RunConfig) -> dict:
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def config_from_manifest(manifest: dict) -> RunConfig:
    """The resolved config a run was started with (as stored in run.json)."""
    return make_config(manifest["algo"], manifest.get("config", {}))
