"""Block-sparse kernel sweeps: the engine behind `spintui profile blocksparse` (no Textual, no Rich).

    python -m spintui.profiles.kernel_sweep RUN_DIR    # run the sweep that RUN_DIR's manifest describes

The CLI turns its options into a `SweepConfig` (`resolve_config`), creates a profile run
(kind "profile", benchmark "blocksparse") whose manifest holds that config, and then either calls
`run_sweep` in its own process (headless) or starts this module as a process of its own and opens
the dashboard on the run. Every case is checked against a dense product *before* it is timed
(kernels/bench.py `time_case`): a wrong case is recorded with status "WRONG", its error and no
timings, so it is never reported as fast; an exception in a case is recorded with status "error"
and the sweep goes on. One `kernel` record per finished case goes to metrics.jsonl; the manifest's
progress holds step (cases done), total_steps, steps_per_sec (cases per second) and eta_s, and its
`environment` the device, threads, driver and versions.

Profile JSON (`--json FILE`, `profile_json`), schema_version 1::

    {
      "schema_version": 1,
      "kind": "spintui.blocksparse_profile",
      "run": {"name", "path", "status", "start_time", "end_time"},
      "environment": {"device": "cpu" | "cuda", "device_name", "threads", "driver", "torch", "triton",
                      "python", "spintui", "git_revision", "host", "launch_overhead_s", "timer"},
      "config": {...},                   # the sweep's options, as in run.json
      "cases": [CASE, ...],              # in the order they finished
      "compare": null | {"baseline", "baseline_path", "threshold", "counts": {verdict: n}, "regressions"}
    }

    CASE = {
      "mode": "sdd" | "dsd" | "dds", "M", "N", "K", "block": int,
      "density": float (requested), "density_actual": float | null (of the layout timed),
      "dtype": "fp32" | "fp16" | "bf16" | "fp64", "layout": "random" | "banded" | "strided",
      "backward": bool,                  # true: times are forward + backward through autograd
      "status": "ok" | "WRONG" | "error", "error": str | null,
      "max_rel_error", "tolerance": float | null,
      "s_dense", "s_ours", "s_torch_bsr", "s_ours_graph": median seconds | null,
      "tflops_effective": useful TFLOP/s of ours (2*M*N*K*density, x3 with backward) | null,
      "speedup": s_dense / s_ours | null,
      "fraction_of_ideal": speedup * density_actual | null (1.0: time saved = work skipped),
      "speedup_vs_torch_bsr": s_torch_bsr / s_ours | null (torch BSR exists for dsd only),
      "sparse_bytes": block values + layout indices | null, "dense_bytes": dense equivalent | null,
      "launch_bound": bool | null, "backend": str | null, "threads": int | null,
      "compare": null | "faster" | "slower" | "same" | "new" | "WRONG" | "error",
      "baseline_s_ours": float | null, "change": s_ours / baseline_s_ours | null
    }

Cases that are not "ok" have null for every timing and derived column.

Comparing profiles: cases match by (mode, M, N, K, block, density, dtype, layout, backward); a case
is slower when s_ours / baseline > 1 + threshold, faster when below 1 / (1 + threshold). The default
threshold (NOISE_THRESHOLD) was measured; see its comment.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from spintui.errors import ConfigError
from spintui.profiles import provenance
from spintui.profiles.processes import SWEEP_MODULE, install_stop_handlers, producer_main, restore_handlers
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import read_manifest, write_json_atomic

T = TypeVar("T")

SCHEMA_VERSION = 1
PROFILE_KIND = "spintui.blocksparse_profile"
BENCHMARK = "blocksparse"
MODES = ("sdd", "dsd", "dds")
LAYOUTS = ("random", "banded", "strided")
BLOCK_SIZES = (16, 32, 64, 128)  # kernels.layout.BLOCK_SIZES, repeated so option parsing needs no torch
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}
DTYPE_ALIASES = {"fp32": "fp32", "float32": "fp32", "float": "fp32", "f32": "fp32",
                 "fp16": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16",
                 "bf16": "bf16", "bfloat16": "bf16",
                 "fp64": "fp64", "float64": "fp64", "double": "fp64", "f64": "fp64"}
CASE_KEY = ("mode", "M", "N", "K", "block", "density", "dtype", "layout", "backward")
VERDICTS = ("faster", "slower", "same", "new", "WRONG", "error")
REGRESSIONS = ("slower", "WRONG", "error")

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

# A CPU case under this time is dominated by per-call overhead (Python dispatch, one BLAS call per
# block), not by arithmetic.
CPU_LAUNCH_BOUND_S = 20e-6
# On CUDA: within this factor of an empty kernel launch, or eager this much slower than the same
# work replayed as a CUDA graph.
CUDA_LAUNCH_FACTOR = 5.0
CUDA_GRAPH_GAP = 1.3

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
        return len(self.sizes) * len(self.blocks) * len(self.densities) * len(self.dtypes) * len(self.modes)


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
                   threshold: float | None = None, min_run_time: float | None = None) -> SweepConfig:
    """A validated config from the CLI's raw options; bad values raise ConfigError (one line)."""
    layout = (layout or "random").lower()
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads}")
    if threshold is not None and not 0.0 < threshold < 10.0:
        raise ConfigError(f"--threshold must be a fraction in (0, 10), e.g. 0.15 for 15%, got {threshold}")
    # Parse everything the user typed before importing torch, so typos fail fast.
    parsed = dict(sizes=parse_sizes(sizes) if sizes is not None else None,
                  blocks=parse_blocks(blocks) if blocks is not None else None,
                  densities=parse_densities(densities) if densities is not None else None,
                  dtypes=parse_dtypes(dtypes) if dtypes is not None else None,
                  modes=parse_modes(modes) if modes is not None else None)
    device = resolve_device(device)
    grid = GRIDS[device + ("-quick" if quick else "")]
    values = {k: v if v is not None else list(grid[k]) for k, v in parsed.items()}
    for M, N, K in values["sizes"]:
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
                       threshold=NOISE_THRESHOLD if threshold is None else threshold)


# --------------------------------------------------------------------------------------------------
# Cases


def case_key(case: dict) -> tuple:
    """The identity of a case across profiles (the requested density, not the layout's)."""
    return (case["mode"], int(case["M"]), int(case["N"]), int(case["K"]), int(case["block"]),
            round(float(case["density"]), 6), case["dtype"], case.get("layout", "random"),
            bool(case.get("backward", False)))


def build_cases(cfg: SweepConfig) -> tuple[list[dict], list[str]]:
    """The grid in run order, and notes about cases dropped because a patterned layout (banded,
    strided) gives the same blocks for two requested densities: those are timed once."""
    cases, notes = [], []
    seen: dict[tuple, float] = {}
    for M, N, K in cfg.sizes:
        for dtype in cfg.dtypes:
            for mode in cfg.modes:
                for block in cfg.blocks:
                    for density in cfg.densities:
                        case = dict(mode=mode, M=M, N=N, K=K, block=block, density=density, dtype=dtype,
                                    layout=cfg.layout, backward=cfg.backward)
                        if cfg.layout != "random":
                            actual = _patterned_density(mode, M, N, K, block, density, cfg.layout)
                            same = (mode, M, N, K, block, dtype, actual)
                            if same in seen:
                                notes.append(f"{cfg.layout} {mode} {M}x{N}x{K} block {block}: density {density:g} "
                                             f"gives the same layout as {seen[same]:g} ({actual:.3f}); timed once")
                                continue
                            seen[same] = density
                        cases.append(case)
    return cases, notes


def _patterned_density(mode, M, N, K, block, density, kind) -> float:
    from spintui.kernels.bench import make_layout

    shape = {"sdd": (M, N), "dsd": (M, K), "dds": (K, N)}[mode]
    return round(make_layout(shape, block, density, kind).density, 6)


EMPTY_COLUMNS = ("density_actual", "max_rel_error", "tolerance", "s_dense", "s_ours", "s_torch_bsr", "s_ours_graph",
                 "tflops_effective", "speedup", "fraction_of_ideal", "speedup_vs_torch_bsr", "sparse_bytes",
                 "dense_bytes", "launch_bound", "backend", "threads", "error")


def run_case(case: dict, cfg: SweepConfig, kernel: Callable | None = None,
             launch_overhead: float | None = None) -> dict:
    """Check, then time, one case; never raises (a failure becomes the record's status)."""
    import torch

    from spintui.kernels.bench import WrongResult, time_case

    rec: dict[str, Any] = {**case, **{k: None for k in EMPTY_COLUMNS}, "status": "ok"}
    try:
        r = time_case(case["mode"], case["M"], case["N"], case["K"], case["block"], case["density"],
                      dtype=getattr(torch, DTYPES[case["dtype"]]), device=cfg.device, threads=cfg.threads,
                      min_run_time=cfg.min_run_time, seed=cfg.seed, layout_kind=case["layout"],
                      backward=case["backward"], kernel=kernel, cpu_timer=cpu_timer(cfg))
    except WrongResult as exc:
        rec.update(status="WRONG", error=str(exc), max_rel_error=_finite(exc.error), tolerance=exc.tolerance)
        return rec
    except Exception as exc:  # OOM, an unsupported combination, a kernel bug: record it and go on
        first = (str(exc).strip().splitlines() or [""])[0]
        rec.update(status="error", error=f"{type(exc).__name__}: {first}"[:300])
        if cfg.device == "cuda":
            torch.cuda.empty_cache()
        return rec
    rec.update(
        density_actual=r["density"], max_rel_error=r["max_rel_error"], tolerance=r["tolerance"],
        s_dense=r["s_dense"], s_ours=r["s_ours"], s_torch_bsr=r["s_torch_bsr"], s_ours_graph=r["s_ours_graph"],
        tflops_effective=r["tflops_effective"], speedup=r["speedup"], fraction_of_ideal=r["fraction_of_ideal"],
        speedup_vs_torch_bsr=r.get("ours_over_torch_bsr"), sparse_bytes=r["sparse_bytes"],
        dense_bytes=r["dense_bytes"], backend=r["backend"], threads=r["threads"],
    )
    rec["launch_bound"] = launch_bound(rec, cfg.device, launch_overhead)
    return rec


def cpu_timer(cfg: SweepConfig) -> str:
    """CPU cases on one thread are timed by the thread's CPU time (see NOISE_THRESHOLD), else wall time."""
    return "thread" if cfg.device == "cpu" and cfg.threads == 1 else "wall"


def launch_bound(rec: dict, device: str, launch_overhead: float | None) -> bool:
    s = rec["s_ours"]
    if device == "cuda":
        near_launch = launch_overhead is not None and s < CUDA_LAUNCH_FACTOR * launch_overhead
        graph = rec.get("s_ours_graph")
        return bool(near_launch or (graph and s > CUDA_GRAPH_GAP * graph))
    return s < CPU_LAUNCH_BOUND_S


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


# --------------------------------------------------------------------------------------------------
# Comparing with a baseline profile


def compare_case(rec: dict, baseline: dict[tuple, dict], threshold: float) -> tuple[str, float | None, float | None]:
    """(verdict, baseline s_ours, change = s_ours / baseline) for one finished case."""
    if rec.get("status") != "ok":
        return rec.get("status", "error"), None, None
    base = baseline.get(case_key(rec))
    if base is None or base.get("status") != "ok" or not base.get("s_ours"):
        return "new", None, None
    change = rec["s_ours"] / base["s_ours"]
    if change > 1.0 + threshold:
        verdict = "slower"
    elif change < 1.0 / (1.0 + threshold):
        verdict = "faster"
    else:
        verdict = "same"
    return verdict, base["s_ours"], change


def compare_profiles(cases: list[dict], baseline_cases: list[dict], threshold: float = NOISE_THRESHOLD) -> dict:
    """Verdicts for recorded cases against recorded baseline cases: {"cases": [...], "counts", "regressions"}."""
    baseline = {case_key(c): c for c in baseline_cases}
    out = []
    for rec in cases:
        verdict, base, change = compare_case(rec, baseline, threshold)
        out.append({**rec, "compare": verdict, "baseline_s_ours": base, "change": change})
    counts = {v: sum(1 for c in out if c["compare"] == v) for v in VERDICTS}
    return {"cases": out, "counts": counts, "regressions": sum(counts[v] for v in REGRESSIONS),
            "threshold": threshold}


# --------------------------------------------------------------------------------------------------
# Reading profiles


def kernel_records(run_dir: Path | str) -> list[dict]:
    records = RunReader(run_dir).poll().records
    return [{k: v for k, v in r.items() if k not in ("kind", "time")} for r in records if r.get("kind") == "kernel"]


def check_profile_run(run_dir: Path | str) -> dict:
    """The manifest of a blocksparse profile run, or ConfigError naming what `run_dir` is instead."""
    manifest = read_manifest(run_dir)
    if manifest.get("kind") != "profile" or manifest.get("benchmark") != BENCHMARK:
        what = manifest.get("algo") or manifest.get("benchmark") or "?"
        raise ConfigError(f"--compare: {Path(run_dir).name} is a {manifest.get('kind')} run ({what}), "
                          f"not a blocksparse profile")
    return manifest


def profile_json(run_dir: Path | str) -> dict:
    """The whole profile in the documented schema (module docstring)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": PROFILE_KIND,
        "run": {"name": run_dir.name, "path": str(run_dir.resolve()), "status": manifest.get("status"),
                "start_time": manifest.get("start_time"), "end_time": manifest.get("end_time")},
        "environment": manifest.get("environment") or {},
        "config": manifest.get("config") or {},
        "cases": kernel_records(run_dir),
        "compare": manifest.get("compare"),
    }


def write_profile_json(run_dir: Path | str, path: Path | str) -> None:
    write_json_atomic(Path(path), profile_json(run_dir))


# --------------------------------------------------------------------------------------------------
# Running


def environment(cfg: SweepConfig, launch_overhead: float | None) -> dict:
    import torch

    cuda = cfg.device == "cuda"
    return {
        "device": cfg.device,
        "device_name": torch.cuda.get_device_name(0) if cuda else provenance.cpu_name(),
        "threads": None if cuda else cfg.threads,
        "cpu_count": os.cpu_count(),
        "driver": provenance.driver_version(),
        "cuda": torch.version.cuda if cuda else None,
        "torch": torch.__version__,
        "triton": provenance.installed_version("triton"),
        "python": provenance.python_version(),
        "spintui": provenance.spintui_version(),
        "git_revision": provenance.git_revision(),
        "host": provenance.host_name(),
        "launch_overhead_s": launch_overhead,
        "timer": "triton.testing.do_bench median (L2 flushed)" if cuda else
                 f"torch.utils.benchmark blocked_autorange median of "
                 f"{'thread CPU time' if cpu_timer(cfg) == 'thread' else 'wall time'}, {cfg.threads} thread(s)",
    }


@dataclass
class SweepResult:
    status: str
    cases: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compare: dict | None = None

    @property
    def wrong(self) -> int:
        return sum(1 for c in self.cases if c["status"] == "WRONG")

    @property
    def errors(self) -> int:
        return sum(1 for c in self.cases if c["status"] == "error")

    @property
    def regressions(self) -> int:
        return (self.compare or {}).get("regressions", 0)


def run_sweep(run_dir: Path | str, on_case: Callable[[dict, int, int, float | None], None] | None = None,
              kernel: Callable | None = None, on_start: Callable[[list[dict], list[str]], None] | None = None
              ) -> SweepResult:
    """Run the sweep a profile run's manifest describes, writing into the run; returns the outcome.

    `on_case(record, done, total, eta_s)` is called after each case (the headless view uses it);
    `kernel` replaces `blocksparse_matmul` (tests inject a wrong one). SIGINT/SIGTERM/SIGHUP ask for
    a clean stop after the current case (a second SIGINT interrupts at once).
    """
    run_dir = Path(run_dir)
    cfg = SweepConfig.from_dict(read_manifest(run_dir)["config"])
    writer = RunWriter(run_dir)
    previous = install_stop_handlers(writer, interrupt_twice=True)  # a second Ctrl-C: stop mid-case
    result = SweepResult("running")
    try:
        import torch

        from spintui.kernels.bench import launch_overhead_s

        if cfg.device == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)
        overhead = None
        try:
            overhead = launch_overhead_s(cfg.device, min_run_time=min(0.2, cfg.min_run_time))
        except Exception:
            pass
        writer.update_manifest(environment=environment(cfg, overhead))
        cases, notes = build_cases(cfg)
        result.notes = notes
        for note in notes:
            writer.event(note)
        baseline = None
        if cfg.compare:
            baseline = {case_key(c): c for c in kernel_records(cfg.compare)}
        total = len(cases)
        writer.set_progress(step=0, total_steps=total, steps_per_sec=None, eta_s=None, wrong=0, errors=0)
        writer.flush()
        if on_start is not None:
            on_start(cases, notes)
        start = time.monotonic()
        for i, case in enumerate(cases):
            if writer.stop_requested:
                break
            rec = run_case(case, cfg, kernel, overhead)
            if baseline is not None:
                verdict, base, change = compare_case(rec, baseline, cfg.threshold)
                rec.update(compare=verdict, baseline_s_ours=base, change=change)
            result.cases.append(rec)
            writer.log("kernel", **rec)
            done = i + 1
            rate = done / max(1e-9, time.monotonic() - start)
            eta = (total - done) / rate
            writer.set_progress(step=done, total_steps=total, steps_per_sec=rate, eta_s=eta,
                                wrong=result.wrong, errors=result.errors)
            writer.flush()
            if on_case is not None:
                on_case(rec, done, total, eta)
        if baseline is not None:
            summary = compare_profiles(result.cases, list(baseline.values()), cfg.threshold)
            result.compare = {"baseline": Path(cfg.compare).name, "baseline_path": str(cfg.compare),
                              "threshold": cfg.threshold, "counts": summary["counts"],
                              "regressions": summary["regressions"]}
            writer.update_manifest(compare=result.compare)
    except BaseException as exc:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        writer.close(status, error=None if status == "stopped" else f"{type(exc).__name__}: {exc}")
        restore_handlers(previous)
        raise
    restore_handlers(previous)
    result.status = "stopped" if writer.stop_requested else "finished"
    writer.close(result.status)
    if cfg.json_path:
        write_profile_json(run_dir, cfg.json_path)
    return result


def _sweep(run_dir: str) -> None:
    result = run_sweep(run_dir)
    print(f"{result.status}: {len(result.cases)} cases, {result.wrong} WRONG, {result.errors} errors")


def main(argv: list[str] | None = None) -> int:
    return producer_main(SWEEP_MODULE, _sweep, argv)


if __name__ == "__main__":
    sys.exit(main())
