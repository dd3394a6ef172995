"""Block-sparse kernel sweeps: the engine behind `spintui profile blocksparse` (no Textual, no Rich).

    python -m spintui.profiles.kernel_sweep RUN_DIR    # run the sweep that RUN_DIR's manifest describes

The CLI turns its options into a `SweepConfig` (sweep_config.py `resolve_config`), creates a profile
run (kind "profile", benchmark "blocksparse") whose manifest holds that config, and then either calls
`run_sweep` in its own process (headless) or starts this module as a process of its own and opens
the dashboard on the run. Every case is checked against a dense product *before* it is timed
(kernels/bench.py `time_case`): a wrong case is recorded with status "WRONG", its error and no
timings, so it is never reported as fast; an exception in a case is recorded with status "error"
and the sweep goes on. One `kernel` record per finished case goes to metrics.jsonl (its columns, the
profile JSON and --compare's verdicts: sweep_results.py); the manifest's progress holds step (cases
done), total_steps, steps_per_sec (cases per second) and eta_s, and its `environment` the device,
threads, driver and versions.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spintui.profiles import provenance
from spintui.profiles.gpu import GpuLogger
from spintui.profiles.processes import SWEEP_MODULE, install_stop_handlers, producer_main, restore_handlers
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import read_manifest
from spintui.profiles.sweep_config import DTYPES, SweepConfig
from spintui.profiles.sweep_results import case_key, compare_case, compare_profiles, kernel_records, write_profile_json

# A CPU case under this time is dominated by per-call overhead (Python dispatch, one BLAS call per
# block), not by arithmetic.
CPU_LAUNCH_BOUND_S = 20e-6
# On CUDA: within this factor of an empty kernel launch, or eager this much slower than the same
# work replayed as a CUDA graph.
CUDA_LAUNCH_FACTOR = 5.0
CUDA_GRAPH_GAP = 1.3


# --------------------------------------------------------------------------------------------------
# Cases


def build_cases(cfg: SweepConfig) -> tuple[list[dict], list[str]]:
    """The grid in run order (per size and dtype: each op, the products once per mode), and notes about
    cases dropped because a patterned layout (banded, strided) gives the same blocks for two requested
    densities: those are timed once."""
    cases, notes = [], []
    seen: dict[tuple, float] = {}
    for M, N, K in cfg.sizes:
        for dtype in cfg.dtypes:
            for op, mode in [(op, mode) for op in cfg.ops for mode in (cfg.modes if op == "matmul" else [None])]:
                for block in cfg.blocks:
                    for density in cfg.densities:
                        case = dict(op=op, mode=mode, M=M, N=N, K=K, block=block, density=density, dtype=dtype,
                                    layout=cfg.layout, backward=cfg.backward)
                        if cfg.layout != "random":
                            actual = _patterned_density(mode, M, N, K, block, density, cfg.layout)
                            same = (op, mode, M, N, K, block, dtype, actual)
                            if same in seen:
                                notes.append(f"{cfg.layout} {mode or op} {M}x{N}x{K} block {block}: density "
                                             f"{density:g} gives the same layout as {seen[same]:g} ({actual:.3f}); "
                                             f"timed once")
                                continue
                            seen[same] = density
                        cases.append(case)
    return cases, notes


def _patterned_density(mode, M, N, K, block, density, kind) -> float:
    from spintui.kernels.bench import make_layout

    shape = {"sdd": (M, N), "dsd": (M, K), "dds": (K, N), None: (M, N)}[mode]  # None: softmax, attention
    return round(make_layout(shape, block, density, kind).density, 6)


EMPTY_COLUMNS = ("density_actual", "max_rel_error", "tolerance", "s_dense", "s_ours", "s_torch_bsr", "s_ours_graph",
                 "s_flex", "tflops_effective", "speedup", "fraction_of_ideal", "speedup_vs_torch_bsr", "sparse_bytes",
                 "dense_bytes", "launch_bound", "backend", "threads", "error")


def run_case(case: dict, cfg: SweepConfig, kernel: Callable | None = None,
             launch_overhead: float | None = None) -> dict:
    """Check, then time, one case; never raises (a failure becomes the record's status). `kernel`
    replaces blocksparse_matmul in product cases."""
    import torch

    from spintui.kernels.bench import WrongResult
    from spintui.kernels.bench_ops import time_op

    rec: dict[str, Any] = {**case, **{k: None for k in EMPTY_COLUMNS}, "status": "ok"}
    try:
        r = time_op(case.get("op", "matmul"), case["mode"], case["M"], case["N"], case["K"], case["block"],
                    case["density"], dtype=getattr(torch, DTYPES[case["dtype"]]), device=cfg.device,
                    threads=cfg.threads, min_run_time=cfg.min_run_time, seed=cfg.seed, layout_kind=case["layout"],
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
        s_flex=r.get("s_flex"),
        tflops_effective=r["tflops_effective"], speedup=r["speedup"], fraction_of_ideal=r["fraction_of_ideal"],
        speedup_vs_torch_bsr=r.get("ours_over_torch_bsr"), sparse_bytes=r["sparse_bytes"],
        dense_bytes=r["dense_bytes"], backend=r["backend"], threads=r["threads"],
    )
    rec["launch_bound"] = launch_bound(rec, cfg.device, launch_overhead)
    return rec


def cpu_timer(cfg: SweepConfig) -> str:
    """CPU cases on one thread are timed by the thread's CPU time (see sweep_config.NOISE_THRESHOLD), else wall time."""
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
    gpu_log = GpuLogger(writer).start() if cfg.device == "cuda" else None  # the run's GPU history
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
        if gpu_log is not None:
            gpu_log.stop()
        writer.close(status, error=None if status == "stopped" else f"{type(exc).__name__}: {exc}")
        restore_handlers(previous)
        raise
    restore_handlers(previous)
    if gpu_log is not None:
        gpu_log.stop()
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
