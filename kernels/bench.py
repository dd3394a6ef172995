"""Timing one block-sparse case against its dense and torch-BSR peers (the profile sweep builds on this).

``time_case`` builds a seeded random layout and operands, checks our result against a dense masked
matmul, then times dense ``torch.matmul``, torch's BSR kernel (DSD only, where torch supports the
dtype/device) and ours in the same process at the same thread count. CPU timings use
``torch.utils.benchmark`` (median of blocked runs); CUDA timings use ``triton.testing.do_bench``
(median, L2 cleared between runs) when triton is installed, else CUDA events.
"""

from __future__ import annotations

import warnings

import torch

from .layout import BlockLayout
from .matmul import blocksparse_matmul, select_backend

# The cases: the CPU target (fp32, >= 4x dense), a CPU sweep, and the GPU grid (bf16).
CPU_CASE = dict(mode="dsd", M=2048, N=2048, K=2048, block=64, density=0.10)
CPU_SWEEP = [dict(mode=m, M=2048, N=2048, K=2048, block=b, density=d)
             for m in ("dsd", "dds", "sdd") for b in (32, 64) for d in (0.25, 0.10, 0.05)]
GPU_GRID = [dict(mode="dsd", M=8192, N=8192, K=8192, block=b, density=d)
            for b in (32, 64, 128) for d in (0.50, 0.25, 0.10, 0.05)]


def case_operands(mode: str, M: int, N: int, K: int, block: int, density: float, dtype: torch.dtype,
                  device, seed: int = 0):
    """(layout, a, b, dense_a, dense_b): our operands and their dense equivalents for C = A @ B."""
    gen = torch.Generator().manual_seed(seed)
    shape = {"sdd": (M, N), "dsd": (M, K), "dds": (K, N)}[mode]
    layout = BlockLayout.random(shape, block, density, seed=seed)

    def randn(*size):
        return torch.randn(*size, generator=gen).to(device=device, dtype=dtype)

    if mode == "sdd":
        a, b = randn(M, K), randn(K, N)
        return layout, a, b, a, b
    values = randn(layout.nnz, block, block)
    sparse_dense = layout.to_dense(values)
    if mode == "dsd":
        b = randn(K, N)
        return layout, values, b, sparse_dense, b
    a = randn(M, K)
    return layout, a, values, a, sparse_dense


def check_case(mode, layout, a, b, dense_a, dense_b, backend=None) -> float:
    """Max error of ours against a dense (masked) matmul, relative to the result's largest entry."""
    ours = blocksparse_matmul(a, b, layout, mode, backend=backend)
    ref_dtype = torch.float64 if a.device.type == "cpu" else torch.float32
    ref = dense_a.to(ref_dtype) @ dense_b.to(ref_dtype)
    if mode == "sdd":
        ours = layout.to_dense(ours)
        ref = ref * layout.dense_mask().to(ref.device, ref_dtype)
    return float((ours.to(ref_dtype) - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def _tolerance(dtype: torch.dtype, device: torch.device) -> float:
    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2
    if dtype == torch.float32:
        return 5e-3 if device.type == "cuda" else 1e-4  # TF32 on CUDA
    return 1e-10


def _time_cpu(fn, threads: int, min_run_time: float) -> float:
    from torch.utils import benchmark
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def _time_cuda(fn, min_run_time: float) -> float:
    try:
        from triton.testing import do_bench
    except ImportError:
        fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(max(5, int(min_run_time * 100))):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2] / 1e3
    return do_bench(fn, rep=int(min_run_time * 1000), return_mode="median") / 1e3


def time_case(mode: str, M: int, N: int, K: int, block: int, density: float,
              dtype: torch.dtype = torch.float32, device="cpu", threads: int | None = None,
              min_run_time: float = 1.0, seed: int = 0, backend: str | None = None,
              include_bsr: bool = True) -> dict:
    """Check and time one case; seconds are medians. Raises AssertionError if ours is wrong."""
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layout, a, b, dense_a, dense_b = case_operands(mode, M, N, K, block, density, dtype, device, seed)
        backend = select_backend(device, dtype, backend)
        error = check_case(mode, layout, a, b, dense_a, dense_b, backend)
        tol = _tolerance(dtype, device)
        if not error <= tol:
            raise AssertionError(f"{mode} {M}x{N}x{K} block {block} density {density}: relative error "
                                 f"{error:.2e} > {tol:.0e}")

        def timed(fn):
            if device.type == "cuda":
                return _time_cuda(fn, min_run_time)
            return _time_cpu(fn, threads, min_run_time)

        result = dict(mode=mode, M=M, N=N, K=K, block=block, density=layout.density, dtype=str(dtype).removeprefix(
            "torch."), device=str(device), threads=threads if device.type == "cpu" else None, backend=backend,
            max_rel_error=error)
        result["s_dense"] = timed(lambda: torch.matmul(dense_a, dense_b))
        result["s_ours"] = timed(lambda: blocksparse_matmul(a, b, layout, mode, backend=backend))
        result["s_torch_bsr"] = None
        if include_bsr and mode == "dsd" and (device.type == "cuda" or dtype in (torch.float32, torch.float64)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bsr = layout.to_bsr(a)
                result["s_torch_bsr"] = timed(lambda: bsr @ b)
    finally:
        torch.set_num_threads(previous_threads)
    useful_flops = 2.0 * M * N * K * layout.density
    result["speedup"] = result["s_dense"] / result["s_ours"]
    result["ideal_speedup"] = 1.0 / layout.density if layout.density else float("inf")
    result["fraction_of_ideal"] = result["speedup"] * layout.density
    result["tflops_effective"] = useful_flops / result["s_ours"] / 1e12
    if result["s_torch_bsr"] is not None:
        result["speedup_torch_bsr"] = result["s_dense"] / result["s_torch_bsr"]
        result["ours_over_torch_bsr"] = result["s_torch_bsr"] / result["s_ours"]
    return result
