"""blocksparse_softmax: softmax over the rows of a block-sparse matrix, with autograd.

``values`` hold the matrix's stored blocks in the SDD output format, ``[..., nnz, block, block]``
(heads as the layout has them); each row of the matrix is normalised over its stored entries:

    y = exp(scale * x - m) / sum(exp(scale * x - m))     m: the row's maximum, computed in fp32

* ``causal``: entry (i, j) of the matrix (element indices) takes part only if j <= i: inside a
  diagonal block the entries above its diagonal are masked, and blocks above the diagonal are left
  out entirely (their outputs are 0);
* a row with no entry left (an empty block-row, or only blocks above the diagonal) gives zeros,
  as ``torch.nn.functional.scaled_dot_product_attention`` does for a fully masked row;
* the output has the input's dtype; fp16 / bf16 / fp32 inputs are computed in fp32, fp64 in fp64.

Backward: dx = scale * y * (dy - sum_row(y * dy)), zero where y is (masked entries, empty rows).

Backends, chosen by `matmul.select_backend` like the products:

* ``"triton"``: one program per block-row (triton_softmax.py);
* ``"cpu"``: ranges of block-rows on torch's threads (threads.py): per block-row one torch.softmax
  over its blocks (forward, large rows), else the reference's code on each range;
* ``"reference"``: plain PyTorch over all blocks at once (row max / sum by scatter), any device.
"""

from __future__ import annotations

import torch

from .layout import BlockLayout
from .matmul import select_backend
from .threads import run_items


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# reference: all blocks of a range of block-rows at once, rows reduced with scatter / index_add
#
# Values are stored block-row after block-row, so block-rows [l0, l1) are the contiguous values
# [row_ptr[l0], row_ptr[l1]): the reference runs on the whole matrix, and the CPU path runs the
# same code on one range of block-rows per thread where that is faster than its per-row loop.


def _blocks_of(layout: BlockLayout, device, l0: int, l1: int) -> tuple[int, int, torch.Tensor]:
    """(first block, end block, block-row of each block counted from l0) of block-rows [l0, l1)."""
    lay, ptr = layout.to(device), layout.host["row_ptr"]
    p0, p1 = ptr[l0], ptr[l1]
    return p0, p1, lay.head_idx[p0:p1] * layout.rows + lay.row_idx[p0:p1] - l0


def _forward_rows(x: torch.Tensor, layout: BlockLayout, scale: float, causal: bool, out: torch.Tensor,
                  l0: int, l1: int) -> None:
    """out[:, blocks of block-rows l0..l1) = softmax of x's, all at once."""
    p0, p1, line = _blocks_of(layout, x.device, l0, l1)
    if p0 == p1:
        return
    Z, b = x.shape[0], layout.block
    s = x[:, p0:p1].to(compute_dtype(x.dtype)) * scale
    if causal:  # entry (i, j) of block (r, c) stays when c * b + j <= r * b + i
        lay, offs = layout.to(x.device), torch.arange(b, device=x.device)
        keep = ((lay.col_idx[p0:p1] * b)[:, None, None] + offs[None, None, :]
                <= (lay.row_idx[p0:p1] * b)[:, None, None] + offs[None, :, None])
        s = s.masked_fill(~keep, float("-inf"))
    row_max = s.new_full((Z, l1 - l0, b), float("-inf"))
    row_max.scatter_reduce_(1, line[None, :, None].expand(Z, p1 - p0, b), s.amax(-1), "amax")
    row_max = row_max.masked_fill(row_max == float("-inf"), 0.0)  # rows with no entry: exp(-inf) = 0
    e = torch.exp(s - row_max[:, line, :, None])
    row_sum = s.new_zeros(Z, l1 - l0, b).index_add_(1, line, e.sum(-1))
    out[:, p0:p1] = e / row_sum.masked_fill(row_sum == 0, 1.0)[:, line, :, None]


def _backward_rows(y: torch.Tensor, dy: torch.Tensor, layout: BlockLayout, scale: float, dx: torch.Tensor,
                   l0: int, l1: int) -> None:
    """dx = scale * y * (dy - sum_row(y * dy)) on the blocks of block-rows [l0, l1), all at once."""
    p0, p1, line = _blocks_of(layout, y.device, l0, l1)
    if p0 == p1:
        return
    ct = compute_dtype(y.dtype)
    yc, dyc = y[:, p0:p1].to(ct), dy[:, p0:p1].to(ct)
    row_dot = yc.new_zeros(y.shape[0], l1 - l0, layout.block).index_add_(1, line, (yc * dyc).sum(-1))
    dx[:, p0:p1] = (dyc - row_dot[:, line, :, None]).mul_(yc).mul_(scale)


def softmax_reference(x: torch.Tensor, layout: BlockLayout, scale: float, causal: bool) -> torch.Tensor:
    """x [Z, nnz, b, b] -> y of the same shape and dtype."""
    out = torch.empty_like(x)
    _forward_rows(x, layout, scale, causal, out, 0, layout.heads_or_one * layout.rows)
    return out


def softmax_backward_reference(y: torch.Tensor, dy: torch.Tensor, layout: BlockLayout, scale: float) -> torch.Tensor:
    dx = torch.empty_like(y)
    _backward_rows(y, dy, layout, scale, dx, 0, layout.heads_or_one * layout.rows)
    return dx


def dense_mask(layout: BlockLayout, causal: bool) -> torch.Tensor:
    """Element-level bool mask of the entries a softmax row takes: the layout's blocks (and j <= i
    if causal), shaped like the layout's matrix."""
    keep = layout.dense_mask()
    return keep & torch.ones(keep.shape[-2:], dtype=torch.bool).tril() if causal else keep


def softmax_dense(values: torch.Tensor, layout: BlockLayout, scale: float, causal: bool) -> torch.Tensor:
    """The definition, for checks: dense softmax of the matrix with every entry outside
    `dense_mask` at -inf, in fp64, returned as block values; a row with nothing left gives zeros."""
    dense = layout.to_dense(values.to(torch.float64)) * scale
    keep = dense_mask(layout, causal).to(values.device)
    y = torch.softmax(dense.masked_fill(~keep, float("-inf")), dim=-1).nan_to_num(0.0)
    return layout.values_from_dense(y)


# ---------------------------------------------------------------------------------------------
# CPU: ranges of block-rows on torch's threads

# Elements per block-row below which the forward runs the reference's all-at-once code on each
# thread's range of block-rows instead of a torch.softmax per block-row (whose ~4 ops of ~5 us
# each then cost more than the work). Measured at 1 thread, thread CPU time, two sessions: 2048^2
# with 10% of 64-blocks (~13k elements a row) 3.7-5.6 ms a row at a time against 6.3-7.5 ms at once;
# 4 heads of 512^2, 30% of 16-blocks (~2.5k) 8.0 against 3.8 ms.
ROW_LOOP_MIN_ELEMENTS = 8192


def _split_rows(layout: BlockLayout, run, elements: int) -> None:
    """run(l0, l1) over ranges of block-rows covering them all, split across threads by block count."""
    ptr = layout.host["row_ptr"]
    run_items([max(1, ptr[j + 1] - ptr[j]) for j in range(len(ptr) - 1)], run, work=elements)


def softmax_cpu(x: torch.Tensor, layout: BlockLayout, scale: float, causal: bool) -> torch.Tensor:
    """Per block-row: its n stored blocks [n, b, b] (contiguous in x) become the b rows [b, n * b] of
    one torch.softmax (scaled on the way: one copy in, one out); with `causal`, the blocks above the
    diagonal are left out and the diagonal block gets -inf above its diagonal. Small block-rows run
    the reference's code a range at a time (ROW_LOOP_MIN_ELEMENTS)."""
    out = torch.empty_like(x)
    lines = layout.heads_or_one * layout.rows
    if layout.nnz * layout.block ** 2 < ROW_LOOP_MIN_ELEMENTS * lines:
        _split_rows(layout, lambda l0, l1: _forward_rows(x, layout, scale, causal, out, l0, l1), x.numel())
        return out
    ptr, cols, rows, b, ct = layout.host["row_ptr"], layout.host["col_idx"], layout.rows, layout.block, \
        compute_dtype(x.dtype)
    minus_upper = torch.zeros(b, b, dtype=ct).masked_fill_(torch.ones(b, b, dtype=torch.bool).triu(1), float("-inf"))

    def run_row(z: int, j: int) -> None:
        start, keep, end = ptr[j], ptr[j + 1], ptr[j + 1]
        if causal:  # columns ascend in a block-row: the blocks left of and on the diagonal come first
            while keep > start and cols[keep - 1] > j % rows:
                keep -= 1
            out[z, keep:end].zero_()
        n = keep - start
        if n == 0:
            return
        u = torch.empty(b, n * b, dtype=ct)
        torch.mul(x[z, start:keep].transpose(0, 1), scale, out=u.view(b, n, b))
        if causal and cols[keep - 1] == j % rows:
            u[:, -b:].add_(minus_upper)
        out[z, start:keep].copy_(torch.softmax(u, -1).view(b, n, b).transpose(0, 1))

    def run(l0: int, l1: int) -> None:
        for j in range(l0, l1):
            for z in range(x.shape[0]):
                run_row(z, j)

    _split_rows(layout, run, x.numel())
    return out


def softmax_backward_cpu(y: torch.Tensor, dy: torch.Tensor, layout: BlockLayout, scale: float) -> torch.Tensor:
    """The reference's all-at-once code on each thread's range of block-rows."""
    dx = torch.empty_like(y)
    _split_rows(layout, lambda l0, l1: _backward_rows(y, dy, layout, scale, dx, l0, l1), y.numel())
    return dx


# ---------------------------------------------------------------------------------------------
# dispatch and autograd


def _functions(backend: str):
    if backend == "triton":
        from . import triton_softmax
        return triton_softmax.softmax, triton_softmax.softmax_backward
    if backend == "cpu":
        return softmax_cpu, softmax_backward_cpu
    return softmax_reference, softmax_backward_reference


class _BlockSparseSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layout, scale, causal, backend):
        forward, _ = _functions(backend)
        y = forward(x, layout, scale, causal)
        ctx.save_for_backward(y)
        ctx.layout, ctx.scale, ctx.backend = layout, scale, backend
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        _, backward = _functions(ctx.backend)
        return backward(y, dy.contiguous(), ctx.layout, ctx.scale), None, None, None, None


def blocksparse_softmax(values: torch.Tensor, layout: BlockLayout, scale: float = 1.0, causal: bool = False,
                        backend: str | None = None) -> torch.Tensor:
    """Row softmax of the block-sparse matrix whose blocks are `values` ([..., nnz, b, b]); see the
    module docstring."""
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    layout.check_values(values)
    if not values.is_floating_point():
        raise TypeError(f"values must be a floating-point tensor, got {values.dtype}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}")
    backend = select_backend(values.device, values.dtype, backend)
    batch = values.shape[:-3]
    x = values.reshape(-1, *values.shape[-3:]).contiguous()
    y = _BlockSparseSoftmax.apply(x, layout.to(values.device), float(scale), bool(causal), backend)
    return y.reshape(*batch, *values.shape[-3:])
