"""Triton kernels for blocksparse_softmax (softmax.py): one program per (block-row, batch).

Imported only by `softmax._functions("triton")`. Under ``TRITON_INTERPRET=1`` the kernels run on
CPU tensors through Triton's interpreter, which is how the tests check them without a GPU.

Forward: a program walks its block-row's stored blocks (``row_ptr``) twice. The first pass keeps,
per element row, a running maximum m and a running sum l of exp(x - m) (rescaled when m grows,
as in online softmax); the second writes exp(x - m) / l. With CAUSAL, entries of a block right of
the element diagonal are -inf: blocks above the diagonal come out as zeros and a row with no entry
left (m = -inf) gives zeros, never NaN. Backward: the first pass sums y * dy per row, the second
writes scale * y * (dy - sum). Both accumulate in fp32 and store the input dtype; a block is a
``block x block`` tile in registers, so one program holds one tile at a time.

Programs start with the longest block-rows (``row_order``), as the products do. No tuned
parameters: num_warps follows the block size.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .layout import BlockLayout


@triton.jit
def _softmax_kernel(x, out, row_ptr, col_idx, order, rows, scale,
                    s_xz, s_xp, s_xr, s_xc,
                    BLOCK: tl.constexpr, CAUSAL: tl.constexpr):
    line = tl.load(order + tl.program_id(0))
    z = tl.program_id(1).to(tl.int64)
    r = line % rows
    start = tl.load(row_ptr + line)
    end = tl.load(row_ptr + line + 1)
    offs = tl.arange(0, BLOCK)
    tile = z * s_xz + offs[:, None] * s_xr + offs[None, :] * s_xc  # out has x's strides
    m = tl.full((BLOCK,), float("-inf"), tl.float32)
    l = tl.zeros((BLOCK,), tl.float32)
    for p in range(start, end):
        s = tl.load(x + tile + p * s_xp).to(tl.float32) * scale
        if CAUSAL:
            c = tl.load(col_idx + p)
            s = tl.where(c * BLOCK + offs[None, :] <= r * BLOCK + offs[:, None], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        base = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing yet: exp(-inf) = 0
        l = l * tl.exp(m - base) + tl.sum(tl.exp(s - base[:, None]), 1)
        m = m_new
    base = tl.where(m == float("-inf"), 0.0, m)
    inv = 1.0 / tl.where(l > 0, l, 1.0)  # l = 0: the row's exps are all 0 already
    for p in range(start, end):
        s = tl.load(x + tile + p * s_xp).to(tl.float32) * scale
        if CAUSAL:
            c = tl.load(col_idx + p)
            s = tl.where(c * BLOCK + offs[None, :] <= r * BLOCK + offs[:, None], s, float("-inf"))
        y = tl.exp(s - base[:, None]) * inv[:, None]
        tl.store(out + tile + p * s_xp, y.to(out.dtype.element_ty))


@triton.jit
def _softmax_backward_kernel(y, dy, dx, row_ptr, order, scale,
                             s_z, s_p, s_r, s_c,
                             BLOCK: tl.constexpr):
    line = tl.load(order + tl.program_id(0))
    z = tl.program_id(1).to(tl.int64)
    start = tl.load(row_ptr + line)
    end = tl.load(row_ptr + line + 1)
    offs = tl.arange(0, BLOCK)
    tile = z * s_z + offs[:, None] * s_r + offs[None, :] * s_c  # y, dy and dx share strides
    dot = tl.zeros((BLOCK,), tl.float32)
    for p in range(start, end):
        yt = tl.load(y + tile + p * s_p).to(tl.float32)
        dyt = tl.load(dy + tile + p * s_p).to(tl.float32)
        dot += tl.sum(yt * dyt, 1)
    for p in range(start, end):
        yt = tl.load(y + tile + p * s_p).to(tl.float32)
        dyt = tl.load(dy + tile + p * s_p).to(tl.float32)
        tl.store(dx + tile + p * s_p, (scale * yt * (dyt - dot[:, None])).to(dx.dtype.element_ty))


def _warps(block: int) -> int:
    return 8 if block >= 128 else 4


def softmax(x: torch.Tensor, layout: BlockLayout, scale: float, causal: bool) -> torch.Tensor:
    """x [Z, nnz, b, b] (contiguous) -> y like x."""
    lay = layout.to(x.device)
    out = torch.empty_like(x)
    lines = layout.heads_or_one * layout.rows
    if x.numel() == 0:
        return out
    _softmax_kernel[(lines, x.shape[0])](x, out, lay.row_ptr, lay.col_idx, lay.row_order, layout.rows, scale,
                                         *x.stride(), BLOCK=layout.block, CAUSAL=causal,
                                         num_warps=_warps(layout.block))
    return out


def softmax_backward(y: torch.Tensor, dy: torch.Tensor, layout: BlockLayout, scale: float) -> torch.Tensor:
    lay = layout.to(y.device)
    y, dy = y.contiguous(), dy.contiguous()
    dx = torch.empty_like(y)
    if y.numel() == 0:
        return dx
    _softmax_backward_kernel[(layout.heads_or_one * layout.rows, y.shape[0])](
        y, dy, dx, lay.row_ptr, lay.row_order, scale, *y.stride(), BLOCK=layout.block,
        num_warps=_warps(layout.block))
    return dx
