"""Timing one block-sparse product case against its dense and torch-BSR peers (the profile sweep builds on
this; softmax and attention cases: bench_ops.py).

``time_case`` builds a seeded layout (random, banded or strided) and operands, checks our result
against a dense masked matmul, then times dense ``torch.matmul``, torch's BSR kernel (DSD only, where
torch supports the dtype/device) and ours in the same process at the same thread count. CPU timings
use ``torch.utils.benchmark`` (median of blocked runs); CUDA timings use ``triton.testing.do_bench``
(median, L2 cleared between runs) when triton is installed, else CUDA events. A CUDA case fast
enough for host overhead to matter is also timed replayed as a CUDA graph (``s_ours_graph``).
With ``backward=True`` the gradients are checked too, and ours and dense are timed forward plus
backward through autograd (torch's BSR has no usable backward, so it is not timed then).
"""

from __future__ import annotations

import warnings

import torch

from .layout import _INDEX_NAMES, BlockLayout
from .matmul import blocksparse_matmul, select_backend

LAYOUT_KINDS = ("random", "banded", "strided")
OPS = ("matmul", "softmax", "attention")  # what a case times; softmax and attention: bench_ops.py
GRAPH_TIMING_BELOW_S = 100e-6  # CUDA cases faster than this are also timed as a CUDA graph


class WrongResult(AssertionError):
    """Our result differs from the dense reference by more than the dtype's tolerance."""

    def __init__(self, message: str, error: float, tolerance: float):
        super().__init__(message)
        self.error = error
        self.tolerance = tolerance


def make_layout(shape: tuple[int, int], block: int, density: float, kind: str = "random",
                seed: int = 0) -> BlockLayout:
    """A layout of `kind` whose density is as close to `density` as the pattern allows.

    banded: the band width (in blocks) with the nearest density; strided: the Sparse Transformer
    stride with the nearest density (causal, so at most about half the blocks).
    """
    if kind == "random":
        return BlockLayout.random(shape, block, density, seed=seed)
    rows, cols = shape[0] // block, shape[1] // block
    r = torch.arange(rows)[:, None]
    c = torch.arange(cols)[None, :]
    if kind == "banded":
        counts = torch.bincount((r - c).abs().flatten(), minlength=max(rows, cols)).cumsum(0)
        width = int(((counts.double() / (rows * cols)) - density).abs().argmin())
        return BlockLayout.banded(shape, block, width)
    if kind == "strided":
        def strided_density(stride):
            mask = (((r - c).abs() < stride) | ((r - c) % stride == 0)) & (c <= r)
            return float(mask.double().mean())
        stride = min(range(1, max(rows, 1) + 1), key=lambda s: abs(strided_density(s) - density))
        return BlockLayout.strided(shape, block, stride)
    raise ValueError(f"layout must be one of {', '.join(LAYOUT_KINDS)}, got {kind!r}")


def layout_bytes(layout: BlockLayout) -> int:
    """Bytes of the index tensors a layout keeps (CSR, CSC and the scheduling orders)."""
    return sum(getattr(layout, name).numel() * getattr(layout, name).element_size() for name in _INDEX_NAMES)


# The cases: the CPU target (fp32, >= 4x dense), a CPU sweep, and the GPU grid (bf16).
CPU_CASE = dict(mode="dsd", M=2048, N=2048, K=2048, block=64, density=0.10)
CPU_SWEEP = [dict(mode=m, M=2048, N=2048, K=2048, block=b, density=d)
             for m in ("dsd", "dds", "sdd") for b in (32, 64) for d in (0.25, 0.10, 0.05)]
GPU_GRID = [dict(mode="dsd", M=8192, N=8192, K=8192, block=b, density=d)
            for b in (32, 64, 128) for d in (0.50, 0.25, 0.10, 0.05)]
# softmax: a 2048 x 2048 layout (K unused); attention: 2048 tokens, head dim 64 (GPU: 8192 tokens, 128)
OP_CASES = {"softmax": dict(M=2048, N=2048, K=2048), "attention": dict(M=2048, N=2048, K=64)}
GPU_OP_CASES = {"softmax": dict(M=8192, N=8192, K=8192), "attention": dict(M=8192, N=8192, K=128)}


def case_operands(mode: str, M: int, N: int, K: int, block: int, density: float, dtype: torch.dtype,
                  device, seed: int = 0, layout_kind: str = "random"):
    """(layout, a, b, dense_a, dense_b): our operands and their dense equivalents for C = A @ B."""
    gen = torch.Generator().manual_seed(seed)
    shape = {"sdd": (M, N), "dsd": (M, K), "dds": (K, N)}[mode]
    layout = make_layout(shape, block, density, layout_kind, seed=seed)

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


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.detach(), ref.detach()
    error = float((ours.to(ref.dtype) - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
    return error if error == error else float("inf")  # NaN in ours is as wrong as it gets


def check_case(mode, layout, a, b, dense_a, dense_b, backend=None, kernel=None) -> float:
    """Max error of ours against a dense (masked) matmul, relative to the result's largest entry."""
    kernel = kernel or blocksparse_matmul
    ours = kernel(a, b, layout, mode, backend=backend)
    ref_dtype = torch.float64 if a.device.type == "cpu" else torch.float32
    ref = dense_a.to(ref_dtype) @ dense_b.to(ref_dtype)
    if mode == "sdd":
        ours = layout.to_dense(ours)
        ref = ref * layout.dense_mask().to(ref.device, ref_dtype)
    return _relative_error(ours, ref)


def check_case_backward(mode, layout, a, b, dense_a, dense_b, grad, backend=None, kernel=None) -> float:
    """Max relative error of our gradients (w.r.t. both operands) against autograd on the dense product."""
    kernel = kernel or blocksparse_matmul
    a_, b_ = a.detach().requires_grad_(), b.detach().requires_grad_()
    grad_a, grad_b = torch.autograd.grad(kernel(a_, b_, layout, mode, backend=backend), (a_, b_), grad)
    ref_dtype = torch.float64 if a.device.type == "cpu" else torch.float32
    da = dense_a.detach().to(ref_dtype).requires_grad_()
    db = dense_b.detach().to(ref_dtype).requires_grad_()
    dense_grad = layout.to_dense(grad.to(ref_dtype)) if mode == "sdd" else grad.to(ref_dtype)
    ref_a, ref_b = torch.autograd.grad(da @ db, (da, db), dense_grad)
    if mode == "dsd":
        ref_a = layout.values_from_dense(ref_a)
    elif mode == "dds":
        ref_b = layout.values_from_dense(ref_b)
    return max(_relative_error(grad_a, ref_a), _relative_error(grad_b, ref_b))


def _tolerance(dtype: torch.dtype, device: torch.device) -> float:
    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2
    if dtype == torch.float32:
        return 5e-3 if device.type == "cuda" else 1e-4  # TF32 on CUDA
    return 1e-10


def _time_cpu(fn, threads: int, min_run_time: float, cpu_timer: str = "wall") -> float:
    """Median seconds per call. cpu_timer "thread" counts this thread's CPU time instead of wall
    time (one thread only): on a shared machine it leaves out the time other processes held the core."""
    import time

    from torch.utils import benchmark
    if cpu_timer == "thread" and threads != 1:
        raise ValueError("cpu_timer 'thread' needs threads=1 (the work must run on the calling thread)")
    clock = time.thread_time if cpu_timer == "thread" else time.perf_counter
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=threads, timer=clock)
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


def _time_cuda_graph(fn, min_run_time: float) -> float:
    """`fn` captured once as a CUDA graph and timed by replays: the time without host overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up (autotuning, allocations) outside the capture
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return _time_cuda(graph.replay, min_run_time)


def launch_overhead_s(device, min_run_time: float = 0.2) -> float:
    """Median time of the smallest kernel launch on `device` (a one-element fill), timed like a case."""
    device = torch.device(device)
    x = torch.zeros(1, device=device)
    if device.type == "cuda":
        return _time_cuda(lambda: x.fill_(1.0), min_run_time)
    return _time_cpu(lambda: x.fill_(1.0), 1, min_run_time)


def time_case(mode: str, M: int, N: int, K: int, block: int, density: float,
              dtype: torch.dtype = torch.float32, device="cpu", threads: int | None = None,
              min_run_time: float = 1.0, seed: int = 0, backend: str | None = None,
              include_bsr: bool = True, layout_kind: str = "random", backward: bool = False,
              kernel=None, cpu_timer: str = "wall") -> dict:
    """Check and time one case; seconds are medians. Raises `WrongResult` (an AssertionError) if
    ours is wrong. `kernel` replaces `blocksparse_matmul` (same signature), e.g. to test the gate."""
    kernel = kernel or blocksparse_matmul
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layout, a, b, dense_a, dense_b = case_operands(mode, M, N, K, block, density, dtype, device, seed,
                                                       layout_kind)
        backend = select_backend(device, dtype, backend)
        tol = _tolerance(dtype, device)
        error = check_case(mode, layout, a, b, dense_a, dense_b, backend, kernel)
        what = "result"
        grad = None
        if backward and error <= tol:
            out_shape = (layout.nnz, block, block) if mode == "sdd" else (M, N)
            grad = torch.randn(*out_shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
            error = max(error, check_case_backward(mode, layout, a, b, dense_a, dense_b, grad, backend, kernel))
            what = "result or gradient"
        if not error <= tol:
            raise WrongResult(f"{mode} {M}x{N}x{K} block {block} density {layout.density:.3g}: {what} "
                              f"relative error {error:.2e} > {tol:.0e}", error, tol)

        def timed(fn):
            if device.type == "cuda":
                return _time_cuda(fn, min_run_time)
            return _time_cpu(fn, threads, min_run_time, cpu_timer)

        result = dict(op="matmul", mode=mode, M=M, N=N, K=K, block=block, density=layout.density,
                      dtype=str(dtype).removeprefix("torch."), device=str(device),
                      threads=threads if device.type == "cpu" else None, backend=backend, max_rel_error=error,
                      tolerance=tol, layout=layout_kind, backward=backward, density_target=density)
        values = b if mode == "dds" else a
        result["sparse_bytes"] = (layout.nnz * block * block * values.element_size() if mode == "sdd"
                                  else values.numel() * values.element_size()) + layout_bytes(layout)
        result["dense_bytes"] = layout.shape[0] * layout.shape[1] * dense_a.element_size()
        result["s_torch_bsr"] = result["s_ours_graph"] = None
        if backward:
            a_g, b_g = a.detach().requires_grad_(), b.detach().requires_grad_()
            da_g, db_g = dense_a.detach().requires_grad_(), dense_b.detach().requires_grad_()
            dense_grad = layout.to_dense(grad) if mode == "sdd" else grad
            result["s_dense"] = timed(lambda: torch.autograd.grad(torch.matmul(da_g, db_g), (da_g, db_g), dense_grad))
            ours = lambda: torch.autograd.grad(kernel(a_g, b_g, layout, mode, backend=backend), (a_g, b_g), grad)  # noqa: E731
            result["s_ours"] = timed(ours)
        else:
            result["s_dense"] = timed(lambda: torch.matmul(dense_a, dense_b))
            ours = lambda: kernel(a, b, layout, mode, backend=backend)  # noqa: E731
            result["s_ours"] = timed(ours)
            if include_bsr and mode == "dsd" and (device.type == "cuda" or dtype in (torch.float32, torch.float64)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    bsr = layout.to_bsr(a)
                    result["s_torch_bsr"] = timed(lambda: bsr @ b)
        if device.type == "cuda" and result["s_ours"] < GRAPH_TIMING_BELOW_S:
            try:
                result["s_ours_graph"] = _time_cuda_graph(ours, min_run_time)
            except Exception:  # not capturable (e.g. a host sync inside): eager timing stands
                result["s_ours_graph"] = None
    finally:
        torch.set_num_threads(previous_threads)
    useful_flops = 2.0 * M * N * K * layout.density * (3 if backward else 1)
    result["speedup"] = result["s_dense"] / result["s_ours"]
    result["ideal_speedup"] = 1.0 / layout.density if layout.density else float("inf")
    result["fraction_of_ideal"] = result["speedup"] * layout.density
    result["tflops_effective"] = useful_flops / result["s_ours"] / 1e12
    if result["s_torch_bsr"] is not None:
        result["speedup_torch_bsr"] = result["s_dense"] / result["s_torch_bsr"]
        result["ours_over_torch_bsr"] = result["s_torch_bsr"] / result["s_ours"]
    return result
