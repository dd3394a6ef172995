"""blocksparse_matmul: one entry point for the three block-sparse products, with autograd.

Modes (S is block-sparse with the layout's pattern, D dense; ``op(X)`` is X or X^T per flag):

* ``"sdd"``: S = op(a) @ op(b), computed only at the layout's blocks -> values [..., nnz, b, b]
* ``"dsd"``: D = op(S_a) @ op(b), `a` holds block values   -> dense [..., M, N]
* ``"dds"``: D = op(a) @ op(S_b), `b` holds block values   -> dense [..., M, N]

Shapes: a dense operand is ``[*batch, rows, cols]``, or ``[*batch, heads, rows, cols]`` for a layout
with heads; block values are ``[*batch, nnz, block, block]``. Batch dims broadcast like
``torch.matmul``. The layout describes the sparse matrix *before* its transpose flag.

Backward is expressed through the other modes, so every backend provides just three products:
for DSD (C = S @ B), dS = SDD(dC, B^T) sampled at the layout and dB = DSD(S^T, dC) using the
column-ordered indices; for DDS (C = A @ S), dA = DDS(dC, S^T) and dS = SDD(A^T, dC); for SDD,
dA = DSD(dC, B^T) and dB = DDS(A^T, dC).

Backends, chosen in `select_backend` (the one dispatch point):

* ``"triton"``: CUDA tensors in fp16 / bf16 / fp32 (fp32 inputs use TF32 tensor cores; every
  backend accumulates in fp32 or better) when triton is installed. CPU tensors only under
  ``TRITON_INTERPRET=1``, for tests.
* ``"cpu"``: CPU tensors, any floating dtype: one BLAS call per stored block (see cpu.py).
* ``"reference"``: any device and floating dtype: gather + batched matmul + scatter.
"""

from __future__ import annotations

import os

import torch

from . import cpu
from .layout import BlockLayout

MODES = ("sdd", "dsd", "dds")
BACKENDS = ("triton", "cpu", "reference")
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def select_backend(device: torch.device, dtype: torch.dtype, requested: str | None = None) -> str:
    """The backend that runs a product on `device` in `dtype` (or checks that `requested` can)."""
    if requested is None:
        if device.type == "cuda" and dtype in TRITON_DTYPES and triton_available():
            return "triton"
        return "cpu" if device.type == "cpu" else "reference"
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {requested!r}")
    if requested == "cpu" and device.type != "cpu":
        raise ValueError(f"backend 'cpu' needs CPU tensors, got device {device}")
    if requested == "triton":
        if not triton_available():
            raise ValueError("backend 'triton' needs the triton package (pip install triton)")
        if device.type == "cpu" and not triton_interpreting():
            raise ValueError("backend 'triton' on CPU tensors runs only under TRITON_INTERPRET=1")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"backend 'triton' needs CUDA tensors, got device {device}")
        if dtype not in TRITON_DTYPES:
            raise TypeError(f"backend 'triton' supports float16, bfloat16 and float32, got {dtype}")
    return requested


def _products(backend: str):
    """(sdd, dsd, dds) callables for a backend; triton is imported only here, on first use."""
    if backend == "triton":
        from . import triton_kernels
        return triton_kernels.sdd, triton_kernels.dsd, triton_kernels.dds
    if backend == "cpu":
        return cpu.sdd_cpu, cpu.dsd_cpu, cpu.dds_cpu
    return cpu.sdd_reference, cpu.dsd_reference, cpu.dds_reference


class _BlockSparseMatmul(torch.autograd.Function):
    """Operands arrive in internal form: dense [Z, H, rows, cols], values [Z, nnz, b, b]."""

    @staticmethod
    def forward(ctx, a, b, layout, mode, trans_a, trans_b, backend, bias):
        ctx.save_for_backward(a, b)
        ctx.layout, ctx.mode, ctx.trans_a, ctx.trans_b, ctx.backend = layout, mode, trans_a, trans_b, backend
        sdd, dsd, dds = _products(backend)
        if mode == "sdd":
            return sdd(a.mT if trans_a else a, b.mT if trans_b else b, layout)
        if mode == "dsd":
            return dsd(a, trans_a, b.mT if trans_b else b, layout, bias=bias)
        return dds(a.mT if trans_a else a, b, trans_b, layout, bias=bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        layout, mode, trans_a, trans_b = ctx.layout, ctx.mode, ctx.trans_a, ctx.trans_b
        sdd, dsd, dds = _products(ctx.backend)
        need_a, need_b, need_bias = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[7]
        grad_a = grad_b = None
        grad_bias = grad.sum((0, 1, 2)) if need_bias else None  # dense output [Z, H, M, N]
        if mode == "sdd":  # C = A @ B sampled; grad is block values
            a_eff, b_eff = (a.mT if trans_a else a), (b.mT if trans_b else b)
            if need_a:  # dA = dC @ B^T, or its transpose B @ dC^T
                grad_a = dds(b_eff, grad, True, layout) if trans_a else dsd(grad, False, b_eff.mT, layout)
            if need_b:  # dB = A^T @ dC, or its transpose dC^T @ A
                grad_b = dsd(grad, True, a_eff, layout) if trans_b else dds(a_eff.mT, grad, False, layout)
        elif mode == "dsd":  # C = S @ B with S = op(values)
            b_eff = b.mT if trans_b else b
            if need_a:  # dS = dC @ B^T at S's blocks; if S = V^T then dV = B @ dC^T at V's blocks
                grad_a = sdd(b_eff, grad.mT, layout) if trans_a else sdd(grad, b_eff.mT, layout)
            if need_b:  # dB = S^T @ dC, or its transpose dC^T @ S
                grad_b = dds(grad.mT, a, trans_a, layout) if trans_b else dsd(a, not trans_a, grad, layout)
        else:  # C = A @ S with S = op(values)
            a_eff = a.mT if trans_a else a
            if need_a:  # dA = dC @ S^T, or its transpose S @ dC^T
                grad_a = dsd(b, trans_b, grad.mT, layout) if trans_a else dds(grad, b, not trans_b, layout)
            if need_b:  # dS = A^T @ dC at S's blocks; if S = V^T then dV = dC^T @ A
                grad_b = sdd(grad.mT, a_eff, layout) if trans_b else sdd(a_eff.mT, grad, layout)
        return grad_a, grad_b, None, None, None, None, None, grad_bias


def blocksparse_matmul(a: torch.Tensor, b: torch.Tensor, layout: BlockLayout, mode: str = "dsd",
                       trans_a: bool = False, trans_b: bool = False, backend: str | None = None,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """Block-sparse matrix product; see the module docstring for modes, shapes and backends.
    `bias` ([N], dsd and dds only) is added to every row of the dense result, fused where the
    backend can (the CPU path starts each output line from it)."""
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.layout != torch.strided:
            raise TypeError(f"{name} must be a strided tensor (pass BSR values via layout.from_bsr), got {t.layout}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    backend = select_backend(a.device, a.dtype, backend)

    blk, heads = layout.block, layout.heads_or_one
    mat_dims = 3 if layout.has_heads else 2
    # sparse matrix shape after its transpose flag, in elements
    s_rows, s_cols = layout.rows * blk, layout.cols * blk

    def dense_parts(name, t, trans):
        if t.dim() < mat_dims:
            raise ValueError(f"{name} must have at least {mat_dims} dims for this layout, got shape {tuple(t.shape)}")
        if layout.has_heads and t.shape[-3] != heads:
            raise ValueError(f"{name} has {t.shape[-3]} heads (dim -3) but the layout has {heads}")
        rows, cols = t.shape[-2:]
        return t.shape[:-mat_dims], (cols, rows) if trans else (rows, cols)

    def sparse_parts(name, t, trans):
        layout.check_values(t, f"{name} (block values)")
        return t.shape[:-3], (s_cols, s_rows) if trans else (s_rows, s_cols)

    if mode == "sdd":
        (batch_a, (m, k)), (batch_b, (k2, n)) = dense_parts("a", a, trans_a), dense_parts("b", b, trans_b)
    elif mode == "dsd":
        (batch_a, (m, k)), (batch_b, (k2, n)) = sparse_parts("a", a, trans_a), dense_parts("b", b, trans_b)
    else:
        (batch_a, (m, k)), (batch_b, (k2, n)) = dense_parts("a", a, trans_a), sparse_parts("b", b, trans_b)
    # Dims the layout fixes are multiples of the block; the free dim (K for sdd, N for dsd, M for
    # dds) may be any size, e.g. a number of tokens.
    free = {"sdd": "K", "dsd": "N", "dds": "M"}[mode]
    for dim_name, size in (("M", m), ("K", k), ("K", k2), ("N", n)):
        if dim_name != free and size % blk:
            raise ValueError(f"{dim_name}={size} is not divisible by block size {blk}")
    if k != k2:
        raise ValueError(f"inner dimensions differ: op(a) is {m}x{k}, op(b) is {k2}x{n}")
    if mode == "sdd" and (m, n) != (s_rows, s_cols):
        raise ValueError(f"sdd output is {m}x{n} but the layout is {s_rows}x{s_cols}")
    if bias is not None:
        if mode == "sdd":
            raise ValueError("bias applies to a dense result (dsd, dds), not to sdd's block values")
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (n,):
            raise ValueError(f"bias must have shape [{n}] (the result's columns), got "
                             f"{tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__}")
        if bias.dtype != a.dtype or bias.device != a.device:
            raise TypeError(f"bias must be {a.dtype} on {a.device} like a and b, got {bias.dtype} on {bias.device}")
    try:
        batch = torch.broadcast_shapes(batch_a, batch_b)
    except RuntimeError:
        raise ValueError(f"batch dims do not broadcast: {tuple(batch_a)} and {tuple(batch_b)}") from None
    z = 1
    for size in batch:
        z *= size

    def internal(t, is_sparse):
        if is_sparse:
            return t.expand(*batch, *t.shape[-3:]).reshape(z, *t.shape[-3:])
        return t.expand(*batch, *t.shape[len(t.shape) - mat_dims:]).reshape(z, heads, *t.shape[-2:])

    a_in = internal(a, mode == "dsd")
    b_in = internal(b, mode == "dds")
    out = _BlockSparseMatmul.apply(a_in, b_in, layout.to(a.device), mode, bool(trans_a), bool(trans_b), backend,
                                   bias)
    if mode == "sdd":
        return out.reshape(*batch, layout.nnz, blk, blk)
    return out.reshape(*batch, *out.shape[1 if layout.has_heads else 2:])
