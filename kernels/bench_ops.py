"""Timing block-sparse softmax and attention cases against their dense peers (the sweep's --ops).

``time_op`` runs one case of an op in bench.OPS: "matmul" is bench.time_case; "softmax" and
"attention" are here, checked first against their definitions in fp64 (fp32 on CUDA) and then
timed like the products (the same timers, the same result fields, so the profile sweep records
every op alike):

* softmax: the values of an M x N layout; peer: dense torch.softmax of the M x N matrix with the
  entries outside the layout at -inf (masked_fill included in its time). K is unused.
* attention: q, k, v of one head, sequence M (= N, the layout is square), head dim K; peers:
  ``scaled_dot_product_attention`` with the layout expanded to a boolean mask, and on CUDA
  FlexAttention compiled with the same block mask (``create_block_mask``), ``s_flex``; skipped
  on the CPU (eager flex_attention applies only the mask, not its block structure).

Causal masking is on for the strided layout kind (a causal pattern) and off for the others.
``tflops_effective`` counts attention's two products (2 * 2 * M^2 * K * density, x3 with
backward) and is None for softmax.
"""

from __future__ import annotations

import torch

from .attention import attention_dense, blocksparse_attention
from .bench import (OPS, WrongResult, _relative_error, _time_cpu, _time_cuda, _tolerance, layout_bytes, make_layout,
                    time_case)
from .softmax import blocksparse_softmax, dense_mask, softmax_dense


def time_op(op: str, mode: str | None, M: int, N: int, K: int, block: int, density: float, **kw) -> dict:
    """One case of `op` (keyword arguments as bench.time_case); the result has an "op" field."""
    if op == "matmul":
        return time_case(mode, M, N, K, block, density, **kw)
    kw.pop("include_bsr", None)
    kw.pop("kernel", None)
    if op == "softmax":
        return time_softmax_case(M, N, K, block, density, **kw)
    if op == "attention":
        return time_attention_case(M, N, K, block, density, **kw)
    raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")


def _randn(gen, dtype, device, *size):
    return torch.randn(*size, generator=gen).to(device=device, dtype=dtype)


def _grad_error(outputs, inputs, ref_outputs, ref_inputs, grad) -> float:
    got = torch.autograd.grad(outputs, inputs, grad)
    want = torch.autograd.grad(ref_outputs, ref_inputs, grad.to(ref_outputs.dtype))
    return max(_relative_error(g, w) for g, w in zip(got, want))


def time_softmax_case(M, N, K, block, density, dtype=torch.float32, device="cpu", threads=None, min_run_time=1.0,
                      seed=0, backend=None, layout_kind="random", backward=False, cpu_timer="wall") -> dict:
    device = torch.device(device)
    layout = make_layout((M, N), block, density, layout_kind, seed=seed)
    causal, scale = layout_kind == "strided", 0.5
    gen = torch.Generator().manual_seed(seed)
    values = _randn(gen, dtype, device, layout.nnz, block, block)
    keep = dense_mask(layout, causal).to(device)
    dense = layout.to_dense(values)

    def ours(v):
        return blocksparse_softmax(v, layout, scale, causal, backend)

    def peer(d):
        return torch.softmax((d * scale).masked_fill(~keep, float("-inf")), dim=-1)

    def check():
        error = _relative_error(ours(values), softmax_dense(values, layout, scale, causal).to(device))
        if backward:  # against the fp64 reference backend (itself tested against the dense definition)
            mine, ref = values.detach().requires_grad_(), values.detach().double().requires_grad_()
            out = blocksparse_softmax(ref, layout, scale, causal, "reference")
            error = max(error, _grad_error(ours(mine), [mine], out, [ref], _randn(gen, dtype, device, *values.shape)))
        return error

    return _run(dict(op="softmax", causal=causal), layout, layout_kind, dtype, device, threads, min_run_time,
                backward, cpu_timer, check, ours_args=(values,), peer_args=(dense,), ours=ours, peer=peer,
                backend=backend,
                sparse_bytes=values.numel() * values.element_size(), dense_bytes=M * N * values.element_size(),
                flops=None, M=M, N=N, K=K)


def time_attention_case(M, N, K, block, density, dtype=torch.float32, device="cpu", threads=None, min_run_time=1.0,
                        seed=0, backend=None, layout_kind="random", backward=False, cpu_timer="wall") -> dict:
    if M != N:
        raise ValueError(f"attention needs a square layout: sequence M = N, got {M}x{N}")
    device = torch.device(device)
    layout = make_layout((M, M), block, density, layout_kind, seed=seed)
    causal = layout_kind == "strided"
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (_randn(gen, dtype, device, 1, M, K) for _ in range(3))
    keep = dense_mask(layout, causal).to(device)

    def ours(q, k, v):
        return blocksparse_attention(q, k, v, layout, causal=causal, backend=backend)

    def peer(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)

    def check():
        ref_dtype = torch.float64 if device.type == "cpu" else torch.float32
        refs = [t.detach().to(ref_dtype).requires_grad_() for t in (q, k, v)]
        ref = attention_dense(*refs, layout, causal=causal)
        error = _relative_error(ours(q, k, v), ref)
        if backward:
            mine = [t.detach().requires_grad_() for t in (q, k, v)]
            error = max(error, _grad_error(ours(*mine), mine, ref, refs, _randn(gen, dtype, device, 1, M, K)))
        return error

    extra = dict(op="attention", causal=causal, s_flex=None)
    if device.type == "cuda":
        extra["s_flex"] = _flex_seconds(layout, causal, (q, k, v), backward, min_run_time)
    flops = 2 * 2.0 * M * M * K * layout.density * (3 if backward else 1)
    return _run(extra, layout, layout_kind, dtype, device, threads, min_run_time, backward, cpu_timer, check,
                ours_args=(q, k, v), peer_args=(q, k, v), ours=ours, peer=peer, backend=backend,
                sparse_bytes=layout.nnz * block * block * q.element_size(), dense_bytes=M * M * q.element_size(),
                flops=flops, M=M, N=N, K=K)


def flex_peer(layout, causal: bool, compiled: bool = True):
    """FlexAttention with the layout (and causal mask) as its BlockMask: fn(q, k, v) on [B, H, T, d],
    or None where torch has no FlexAttention. Compiled is what to time (eager applies only the mask)."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        return None
    seq = layout.shape[-1]
    cache: dict = {}

    def mask_mod(b, h, q_idx, kv_idx):
        return cache["keep"][q_idx, kv_idx]

    flex = torch.compile(flex_attention) if compiled else flex_attention

    def fn(q, k, v):
        if "mask" not in cache:  # on the device of the first call
            cache["keep"] = dense_mask(layout, causal).to(q.device)
            cache["mask"] = create_block_mask(mask_mod, None, None, seq, seq, device=q.device, BLOCK_SIZE=layout.block)
        return flex(q, k, v, block_mask=cache["mask"])
    return fn


def _flex_seconds(layout, causal, qkv, backward, min_run_time) -> float | None:
    """Compiled FlexAttention on the case's q, k, v (CUDA), timed like ours; None if unavailable."""
    flex = flex_peer(layout, causal)
    if flex is None:
        return None
    args = [t[:, None] for t in qkv]  # [B, H, T, d]
    if backward:
        args = [t.detach().requires_grad_() for t in args]
        grad = torch.randn_like(args[0])
        fn = lambda: torch.autograd.grad(flex(*args), args, grad)  # noqa: E731
    else:
        fn = lambda: flex(*args)  # noqa: E731
    fn()  # compile outside the timing
    return _time_cuda(fn, min_run_time)


def _run(extra, layout, layout_kind, dtype, device, threads, min_run_time, backward, cpu_timer, check, *,
         ours_args, peer_args, ours, peer, backend, sparse_bytes, dense_bytes, flops, M, N, K) -> dict:
    """Check (WrongResult past the dtype's tolerance), then time ours and the dense peer; the
    result has bench.time_case's fields."""
    from .matmul import select_backend

    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        backend = select_backend(device, dtype, backend)
        tol = _tolerance(dtype, device)
        error = check()
        if not error <= tol:
            what = "result or gradient" if backward else "result"
            raise WrongResult(f"{extra['op']} {M}x{N}x{K} block {layout.block} density {layout.density:.3g}: {what} "
                              f"relative error {error:.2e} > {tol:.0e}", error, tol)

        def timed(fn, args):
            if backward:
                args = [a.detach().requires_grad_() for a in args]
                out = fn(*args)
                grad = torch.randn_like(out)
                call = lambda: torch.autograd.grad(fn(*args), args, grad)  # noqa: E731
            else:
                call = lambda: fn(*args)  # noqa: E731
            if device.type == "cuda":
                return _time_cuda(call, min_run_time)
            return _time_cpu(call, threads, min_run_time, cpu_timer)

        s_dense = timed(peer, peer_args)
        s_ours = timed(ours, ours_args)
    finally:
        torch.set_num_threads(previous_threads)
    result = dict(mode=None, M=M, N=N, K=K, block=layout.block, density=layout.density,
                  dtype=str(dtype).removeprefix("torch."), device=str(device),
                  threads=threads if device.type == "cpu" else None, backend=backend, max_rel_error=error,
                  tolerance=tol, layout=layout_kind, backward=backward, s_dense=s_dense, s_ours=s_ours,
                  s_torch_bsr=None, s_ours_graph=None, sparse_bytes=sparse_bytes + layout_bytes(layout),
                  dense_bytes=dense_bytes)
    result.update(extra)
    result["speedup"] = s_dense / s_ours
    result["ideal_speedup"] = 1.0 / layout.density if layout.density else float("inf")
    result["fraction_of_ideal"] = result["speedup"] * layout.density
    result["tflops_effective"] = None if flops is None else flops / s_ours / 1e12
    return result
