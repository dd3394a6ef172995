"""What a block-sparse kernel sweep runs: its options, parsed and checked into a `SweepConfig`.

`resolve_config` turns the CLI's raw options (`spintui profile blocksparse`) into a validated config;
every bad value raises ConfigError with one line naming the option and what it accepts. Parsing
needs no torch, so typos fail fast; only the device and dtype checks import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, TypeVar

from spintui.errors import ConfigError

T = TypeVar("T")

BENCHMARK = "blocksparse"  # the benchmark of a profile run that holds a sweep
MODES = ("sdd", "dsd", "dds")
OPS = ("matmul", "softmax", "attention")  # kernels.bench.OPS, repeated so option parsing needs no torch
LAYOUTS = ("random", "banded", "strided")
BLOCK_SIZES = (16, 32, 64, 128)  # kernels.layout.BLOCK_SIZES, repeated so option parsing needs no torch
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}
DTYPE_ALIASES = {"fp32": "fp32", "float32": "fp32", "float": "fp32", "f32": "fp32",
                 "fp16": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16",
                 "bf16": "bf16", "bfloat16": "bf16",
                 "fp64": "fp64", "float64": "fp64", "double": "fp64", "f64": "fp64"}

# Run-to-run noise of s_ours, measured with benchmarks/bench_profile_noise.py on the 2-core development
# machine while other jobs kept it at a load average of 5-8: two series of 5 back-to-back runs of the
# --quick CPU grid (36 cases, 1 thread), every ordered pair of runs of the same case taken as
# (new, baseline), 1440 pairs in all. Change s_new / s_base - 1: median 0.0%, p90 +42%, p95 +58%,
# p99 +82%, max +117%. A case is flagged "slower" past 1 + threshold in 6.8% of pairs at 0.50,
# 1.7% at 0.75, 0.56% at 1.00, 0.07% at 1.25 and 0 at 1.50; with 36 cases a run of unchanged code
# is then reported as regressed ~92%, 45%, 18%, 2.5% and ~0% of the time. 1.25 (2.25x slower) keeps
# a CI gate on such a machine from flapping. Timed by wall clock instead of thread CPU time, the
# same grid's p95 change was +426%. A quiet GPU box is far steadier: measure it with the same script
# and pass --threshold.
NOISE_THRESHOLD = 1.25

GRIDS = {
    # sizes, blocks, densities, dtypes, modes, seconds of timing per peer
    "cpu": dict(sizes=[(512, 512, 512), (1024, 1024, 1024)], blocks=[32, 64],
                densities=[0.5, 0.25, 0.1, 0.05], dtypes=["fp32"], modes=list(MODES), min_run_time=0.2),
    "cpu-quick": dict(sizes=[(256, 256, 256), (512, 512, 512)], blocks=[32, 64],
                      densities=[0.5, 0.25, 0.1], dtypes=["fp32"], modes=list(MODES), min_run_time=0.1),
    "cuda": dict(sizes=[(4096, 4096, 4096), (8192, 8192, 8192)], blocks=[32, 64, 128],
                 densities=[0.5, 0.25, 0.1, 0.05], dtypes=["bf16"], modes=list(MODES), min_run_time=0.1),
    "cuda-quick": dict(sizes=[(4096, 4096, 4096)], blocks=[64, 128], densities=[0.5, 0.1],
                       dtypes=["bf16"], modes=list(MODES), min_run_time=0.05),
}


@dataclass
class SweepConfig:
    """What a sweep runs; stored as the profile run's config."""

    sizes: list[tuple[int, int, int]]
    blocks: list[int]
    densities: list[float]
    dtypes: list[str]
    modes: list[str]
    layout: str = "random"
    backward: bool = False
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    min_run_time: float = 0.2
    quick: bool = False
    json_path: str | None = None
    compare: str | None = None  # baseline profile run directory
    threshold: float = NOISE_THRESHOLD
    # what each grid point times: the products (once per mode), softmax of the M x N layout's
    # values, attention over M = N tokens with head dim K (kernels/bench_ops.py); a config
    # recorded before ops existed meant the products
    ops: list[str] = field(default_factory=lambda: ["matmul"])

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sizes"] = [list(s) for s in self.sizes]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "SweepConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["sizes"] = [tuple(int(x) for x in s) for s in known.get("sizes", [])]
        return cls(**known)

    @property
    def n_grid(self) -> int:
        per_op = sum(len(self.modes) if op == "matmul" else 1 for op in self.ops)
        return len(self.sizes) * len(self.blocks) * len(self.densities) * len(self.dtypes) * per_op


# --------------------------------------------------------------------------------------------------
# Options -> config


def _items(text: str, separators: str = ",") -> list[str]:
    for sep in separators:
        text = text.replace(sep, " ")
    return [t for t in text.split() if t]


def _parse_list(option: str, text: str, item: Callable[[str], T | None], invalid: str, wanted: str,
                separators: str = ",") -> list[T]:
    """The distinct values of a list option, in order; `item` parses one (None: invalid)."""
    out = []
    for raw in _items(text, separators):
        value = item(raw)
        if value is None:
            raise ConfigError(f"{option}: {raw!r} {invalid}")
        out.append(value)
    if not out:
        raise ConfigError(f"{option}: give at least one {wanted}")
    return list(dict.fromkeys(out))


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """'1024' -> square; '1024,2048,512' -> (M, N, K); several separated by spaces or ';'."""
    return _parse_list("--sizes", text, _size, "is not N or M,N,K with positive integers "
                       "(e.g. '1024' or '1024,2048,512'; several separated by spaces or ';')",
                       "size, e.g. '1024' or '1024,2048,512'", separators=";")


def _size(item: str) -> tuple[int, int, int] | None:
    try:
        dims = [int(p) for p in item.lower().replace("x", ",").split(",") if p]
    except ValueError:
        return None
    if len(dims) == 1:
        dims = dims * 3
    return tuple(dims) if len(dims) == 3 and all(d > 0 for d in dims) else None


def parse_blocks(text: str) -> list[int]:
    accepted = ", ".join(map(str, BLOCK_SIZES))
    return _parse_list("--blocks", text, _block, f"is not a supported block size; accepted: {accepted}",
                       f"block size ({accepted})")


def _block(item: str) -> int | None:
    try:
        block = int(item)
    except ValueError:
        return None
    return block if block in BLOCK_SIZES else None


def parse_densities(text: str) -> list[float]:
    """'0.5,0.25' or '50%,25%' (fractions of blocks stored, in (0, 1])."""
    return _parse_list("--densities", text, _density,
                       "is not a density in (0, 1] or (0%, 100%], e.g. 0.5,0.1 or 50%,10%",
                       "density, e.g. 0.5,0.1 or 50%,10%")


def _density(item: str) -> float | None:
    try:
        value = float(item[:-1]) / 100 if item.endswith("%") else float(item)
    except ValueError:
        return None
    return round(value, 6) if 0.0 < value <= 1.0 else None


def parse_dtypes(text: str) -> list[str]:
    return _parse_list("--dtypes", text, lambda item: DTYPE_ALIASES.get(item.lower()),
                       f"is not a dtype; accepted: {', '.join(DTYPES)} (or float32, float16, bfloat16, float64)",
                       f"of {', '.join(DTYPES)}")


def check_ops(ops) -> list[str]:
    """The distinct ops, in order, from a list or 'matmul,softmax' (the CLI has checked the words;
    other callers may not have)."""
    ops = _items(ops) if isinstance(ops, str) else list(ops)
    bad = [op for op in ops if op not in OPS]
    if bad or not ops:
        raise ConfigError(f"--ops: {bad[0]!r} is not an op; accepted: {', '.join(OPS)}" if bad else
                          f"--ops: give at least one of {', '.join(OPS)}")
    return list(dict.fromkeys(ops))


def parse_modes(text: str) -> list[str]:
    return _parse_list("--modes", text, lambda item: item.lower() if item.lower() in MODES else None,
                       f"is not a mode; accepted: {', '.join(MODES)}", f"of {', '.join(MODES)}")


def resolve_device(name: str) -> str:
    import torch

    name = (name or "auto").lower()
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return name


def dtype_problem(dtype: str, device: str) -> str | None:
    """Why `dtype` cannot run on `device` with this torch build, or None (tries a tiny dense product;
    a kernel that fails in one case is recorded in that case, not refused up front)."""
    import torch

    tdtype = getattr(torch, DTYPES[dtype])
    try:
        a = torch.ones(16, 16, dtype=tdtype, device=device)
        torch.matmul(a, a)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"--dtypes: {dtype} is not supported on {device} by this torch build ({first[:120]})"
    return None


def resolve_config(*, sizes: str | None = None, blocks: str | None = None, densities: str | None = None,
                   dtypes: str | None = None, modes: str | None = None, layout: str = "random",
                   backward: bool = False, device: str = "auto", threads: int | None = None, seed: int = 0,
                   quick: bool = False, json_path: str | None = None, compare: str | None = None,
                   threshold: float | None = None, min_run_time: float | None = None,
                   ops=("matmul",)) -> SweepConfig:
    """A validated config from the CLI's raw options; bad values raise ConfigError (one line)."""
    layout = (layout or "random").lower()
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads}")
    if threshold is not None and not 0.0 < threshold < 10.0:
        raise ConfigError(f"--threshold must be a fraction in (0, 10), e.g. 0.15 for 15%, got {threshold}")
    # Parse everything the user typed before importing torch, so typos fail fast.
    ops = check_ops(ops)
    parsed = dict(sizes=parse_sizes(sizes) if sizes is not None else None,
                  blocks=parse_blocks(blocks) if blocks is not None else None,
                  densities=parse_densities(densities) if densities is not None else None,
                  dtypes=parse_dtypes(dtypes) if dtypes is not None else None,
                  modes=parse_modes(modes) if modes is not None else None)
    device = resolve_device(device)
    grid = GRIDS[device + ("-quick" if quick else "")]
    values = {k: v if v is not None else list(grid[k]) for k, v in parsed.items()}
    for M, N, K in values["sizes"]:
        if "attention" in ops and M != N:
            raise ConfigError(f"--sizes: {M},{N},{K} has M != N, but attention runs M = N tokens (K is the head dim)")
        for block in values["blocks"]:
            if M % block or N % block or K % block:
                raise ConfigError(f"--sizes: {M},{N},{K} is not divisible by block {block} "
                                  f"(M, N and K must be multiples of every --blocks value)")
    for dtype in values["dtypes"]:
        problem = dtype_problem(dtype, device)
        if problem:
            raise ConfigError(problem)
    if device == "cpu" and threads is None:
        threads = 1  # per-thread CPU time: see NOISE_THRESHOLD
    return SweepConfig(**values, layout=layout, backward=backward, device=device, threads=threads, seed=seed,
                       min_run_time=grid["min_run_time"] if min_run_time is None else min_run_time, quick=quick,
                       json_path=json_path, compare=compare,
                       threshold=NOISE_THRESHOLD if threshold is None else threshold, ops=ops)
