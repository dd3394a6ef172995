"""PyTorch implementations of the three block-sparse products: a reference path and a CPU fast path.

Both take the operands in the internal form that `matmul.py` prepares:

* dense operands ``[Z, H, rows, cols]`` (any strides: transposes arrive as views),
* block values ``[Z, nnz, block, block]`` in the layout's row-major order,
* ``trans_s``: the sparse operand is the transpose of the matrix the layout describes.

and return a fresh output: dense ``[Z, H, M, N]`` or values ``[Z, nnz, block, block]``.

The reference path gathers every block's operands and does one batched matmul, then scatters with
``index_add_``. It works on any device and dtype and is the correctness baseline.

The CPU fast path walks the layout's precomputed index lists in Python and issues one BLAS call per
stored block, writing straight into views of the output: for DSD each block ``(r, c)`` is a
``block x block x N`` GEMM ``C[r] += S[r, c] @ B[c]`` where both ``B[c]`` and ``C[r]`` are
contiguous row slices, so nothing is gathered or copied (DDS writes column slices, which BLAS
also takes in place through the leading dimension). At 2048^3 with 10% of 64-blocks that is
~100 GEMMs of 17 MFLOP each, large enough that BLAS runs near its dense speed and the Python loop
costs well under a millisecond. Alternatives measured here (1 thread, 2048^3, 64-blocks, 10%, one
session): per block 32-46 ms; per-row panels (a row's blocks concatenated against gathered rows of
B: the gather copies more than the bigger GEMM saves) 39-66 ms; gather + bmm (the reference path)
139 ms; torch's BSR @ dense 175-250 ms; dense 217-267 ms. For DDS, per-column panels and DSD on
the transposed problem were within noise of per block. When each block's GEMM is tiny (few
tokens), the gathering path wins instead: see LOOP_MIN_BLOCK_WORK.

Threads: the items of a product (output lines, or blocks for SDD) are split across torch's thread
count, each thread running single-threaded BLAS (threads.py), with one join per product. Before,
torch threaded each block's small GEMM itself, which ends every GEMM in a barrier; on this shared
2-core machine (load average 5-7) that gave 0.5-1.4x dense at 2 threads, against 5-6.7x now
(benchmarks/bench_blocksparse_threads.py, 2048^3 fp32, 10% of 64-blocks). The dense operand's
strips are packed when BLAS would read them through a long stride (`_strips`).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from .layout import BlockLayout
from .threads import run_items, run_tasks, threads_for

# ---------------------------------------------------------------------------------------------
# reference: gather, batched matmul, scatter


def sdd_reference(a: torch.Tensor, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    """values[z, p] = a[z, h, rows of r] @ b[z, h, :, cols of c] for every stored block p = (h, r, c)."""
    lay, blk = layout.to(a.device), layout.block
    Z, H, M, K = a.shape
    N = b.shape[-1]
    a_rows = a.reshape(Z, H, M // blk, blk, K)[:, lay.head_idx, lay.row_idx]  # [Z, nnz, blk, K]
    b_cols = b.reshape(Z, H, K, N // blk, blk).permute(0, 1, 3, 2, 4)[:, lay.head_idx, lay.col_idx]  # [Z, nnz, K, blk]
    return torch.matmul(a_rows, b_cols)


def dsd_reference(values: torch.Tensor, trans_s: bool, b: torch.Tensor, layout: BlockLayout,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """out[z, h] = S_h @ b[z, h] (S_h^T @ b[z, h] if trans_s) with S given by `values` at `layout`,
    plus `bias` ([N]) in every row."""
    lay, blk = layout.to(b.device), layout.block
    Z, H, K, N = b.shape
    out_rows, k_idx, row_idx, s = ((layout.cols, lay.row_idx, lay.col_idx, values.mT) if trans_s else
                                   (layout.rows, lay.col_idx, lay.row_idx, values))
    b_rows = b.reshape(Z, H, K // blk, blk, N)[:, lay.head_idx, k_idx]  # [Z, nnz, blk, N]
    products = torch.matmul(s, b_rows)
    out = b.new_zeros(Z, H * out_rows, blk, N) if bias is None else bias.expand(Z, H * out_rows, blk, N).clone()
    out.index_add_(1, lay.head_idx * out_rows + row_idx, products)
    return out.reshape(Z, H, out_rows * blk, N)


def dds_reference(a: torch.Tensor, values: torch.Tensor, trans_s: bool, layout: BlockLayout,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """out[z, h] = a[z, h] @ S_h (a[z, h] @ S_h^T if trans_s), plus `bias` ([N]) in every row."""
    lay, blk = layout.to(a.device), layout.block
    Z, H, M, K = a.shape
    out_cols, k_idx, col_idx, s = ((layout.rows, lay.col_idx, lay.row_idx, values.mT) if trans_s else
                                   (layout.cols, lay.row_idx, lay.col_idx, values))
    a_cols = a.reshape(Z, H, M, K // blk, blk).permute(0, 1, 3, 2, 4)[:, lay.head_idx, k_idx]  # [Z, nnz, M, blk]
    products = torch.matmul(a_cols, s)
    out = a.new_zeros(Z, H * out_cols, M, blk)
    out.index_add_(1, lay.head_idx * out_cols + col_idx, products)
    out = out.reshape(Z, H, out_cols, M, blk).permute(0, 1, 3, 2, 4).reshape(Z, H, M, out_cols * blk)
    return out if bias is None else out.add_(bias)


# ---------------------------------------------------------------------------------------------
# CPU fast path: one BLAS call per stored block, straight into output views

# Multiply-adds per block GEMM below which the ~10 us Python + dispatch cost of each call outweighs
# the copies of the gathering reference path (measured: 64 tokens x 32-blocks is faster gathered,
# 512 tokens x 32-blocks faster per block).
LOOP_MIN_BLOCK_WORK = 1 << 17
# With several threads, DSD / DDS split their free dimension across threads when each gets this much.
FREE_SPLIT_MIN = 512

Pack = Callable[[int, int], None]


def _small(free: int, layout: BlockLayout) -> bool:
    return free * layout.block * layout.block < LOOP_MIN_BLOCK_WORK


def _strips(x: torch.Tensor, dim: int, blk: int, uses: float) -> tuple[torch.Tensor, Pack | None]:
    """x [Z, H, R, C] cut into blocks of `blk` along `dim` (2: row strips [Z, H, R/blk, blk, C];
    3: column strips [Z, H, C/blk, R, blk]), each strip one dense matrix for BLAS, and None, or an
    empty packed buffer and ``pack(first, last)``, which copies strips [first, last) into it.

    A strip whose contiguous runs are only `blk` long (column strips of a row-major x, row strips
    of a column-major one) is packed when each strip feeds `uses` >= 1 GEMMs on average: BLAS
    reads such a strip through a long stride (a power of two at the usual sizes, so the rows it
    touches share a few cache sets); at 2048^3 fp32 with 64-blocks the packed DDS took 56 ms
    against 73 ms, the copy included (1 thread). The copy keeps the source's contiguous runs (a
    column-major x's row strips are stored column-major and read transposed by BLAS), so it streams."""
    if dim == 2 and x.stride(-1) != 1 and x.stride(-2) == 1:  # row strips of x = column strips of x^T
        strips, pack = _strips(x.mT, 3, blk, uses)
        return strips.mT, pack
    view = x.unflatten(dim, (x.shape[dim] // blk, blk))
    if dim == 3:
        view = view.transpose(2, 3)
    runs_short = x.stride(-1) != 1 if dim == 2 else x.stride(-2) != 1
    if not (runs_short and uses >= 1):
        return view, None
    packed = torch.empty(view.shape, dtype=x.dtype, device=x.device)

    def pack(first: int, last: int) -> None:
        packed[:, :, first:last].copy_(view[:, :, first:last])
    return packed, pack


def _pack_all(packs: list[tuple[Pack | None, int]], work: float) -> None:
    """Run every (pack, strip count) of `_strips`, the strips split across threads."""
    packs = [(pack, n) for pack, n in packs if pack is not None]
    if not packs:
        return
    starts = [0]
    for _, n in packs:
        starts.append(starts[-1] + n)

    def run(first: int, last: int) -> None:  # strip indices over the packs, one after the other
        for (pack, _), start, end in zip(packs, starts, starts[1:]):
            if first < end and last > start:
                pack(max(first, start) - start, min(last, end) - start)

    run_items([1] * starts[-1], run, work)


def sdd_cpu(a: torch.Tensor, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    blk, host = layout.block, layout.host
    Z, H, M, K = a.shape
    if _small(K, layout):
        return sdd_reference(a, b, layout)
    out = a.new_empty(Z, layout.nnz, blk, blk)
    heads, rows, cols, nnz = host["head_idx"], host["row_idx"], host["col_idx"], layout.nnz
    a_rows, pack_a = _strips(a, 2, blk, nnz / (H * layout.rows))  # [Z, H, rows, blk, K]
    b_cols, pack_b = _strips(b, 3, blk, nnz / (H * layout.cols))  # [Z, H, cols, K, blk]
    work = Z * nnz * blk * blk * K
    _pack_all([(pack_a, layout.rows), (pack_b, layout.cols)], work)

    def run(first: int, last: int) -> None:  # items: (z, stored block p) as z * nnz + p
        for t in range(first, last):
            z, p = divmod(t, nnz)
            h = heads[p]
            torch.mm(a_rows[z, h, rows[p]], b_cols[z, h, cols[p]], out=out[z, p])

    run_items([1] * (Z * nnz), run, work)
    return out


def dsd_cpu(values: torch.Tensor, trans_s: bool, b: torch.Tensor, layout: BlockLayout,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    if _small(b.shape[-1], layout):
        return dsd_reference(values, trans_s, b, layout, bias)
    return _lines_cpu(values, trans_s, b, layout, True, bias)


def dds_cpu(a: torch.Tensor, values: torch.Tensor, trans_s: bool, layout: BlockLayout,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    if _small(a.shape[-2], layout):
        return dds_reference(a, values, trans_s, layout, bias)
    return _lines_cpu(values, trans_s, a, layout, False, bias)


def _lines_cpu(values: torch.Tensor, trans_s: bool, dense: torch.Tensor, layout: BlockLayout,
               sparse_left: bool, bias: torch.Tensor | None) -> torch.Tensor:
    """DSD, op(S) @ dense (sparse_left), or DDS, dense @ op(S), one output line at a time: a block-row
    of the DSD output (contiguous rows) or a block-column of the DDS output (a column slice, which
    BLAS also takes in place through its leading dimension: no copy).

    Threads (threads.py): when the free dimension (DSD's columns, DDS's rows) gives every thread at
    least FREE_SPLIT_MIN of it, each thread takes an equal slice of it through all lines and packs
    its own slice of the dense operand (no work shared, no imbalance); otherwise the lines are
    split across threads by their block counts. A `bias` is where each line starts (the first
    block's GEMM is an addmm), so it costs no pass of its own."""
    blk, host = layout.block, layout.host
    Z, H, rows, cols = dense.shape
    if sparse_left != trans_s:  # the lines are S's block-rows (CSR order)
        lines, ptr, k_idx, v_idx = layout.rows, host["row_ptr"], host["col_idx"], None
    else:  # S's block-columns (CSC order)
        lines, ptr, k_idx, v_idx = layout.cols, host["col_ptr"], host["csc_row_idx"], host["csc_value_idx"]
    out = dense.new_empty(Z, H, lines * blk, cols) if sparse_left else dense.new_empty(Z, H, rows, lines * blk)
    vz = [values[z].mT if trans_s else values[z] for z in range(Z)]
    summed, free_dim = (2, 3) if sparse_left else (3, 2)  # dims of `dense` (and, for free_dim, of `out`)
    n_strips = dense.shape[summed] // blk
    uses = layout.nnz / (H * n_strips)  # GEMMs per strip of the dense operand

    def lines_of(d: torch.Tensor, o: torch.Tensor, pack_here: bool, f0: int = 0) -> Callable[[int, int], None]:
        """A loop over lines (z, head, line i) as (z * H + h) * lines + i, of `d` into `o` (the free
        dim from f0 on); packs `d`'s strips first on this thread (pack_here) or split across threads."""
        strips, pack = _strips(d, summed, blk, uses)  # along the summed dim: [Z, H, strips, ...]
        if pack is not None:
            pack(0, n_strips) if pack_here else _pack_all([(pack, n_strips)], d.numel())
        dzh = [[strips[z, h] for h in range(H)] for z in range(Z)]
        ozh = [[o[z, h] for h in range(H)] for z in range(Z)]
        bias_free = None if bias is None or not sparse_left else bias[f0:f0 + o.shape[3]]

        def run(first: int, last: int) -> None:
            for t in range(first, last):
                zh, i = divmod(t, lines)
                z, h = divmod(zh, H)
                v, dh = vz[z], dzh[z][h]
                start, end = ptr[h * lines + i], ptr[h * lines + i + 1]
                oi = ozh[z][h][i * blk:(i + 1) * blk] if sparse_left else ozh[z][h][:, i * blk:(i + 1) * blk]
                bi = bias_free if sparse_left or bias is None else bias[i * blk:(i + 1) * blk]
                if start == end:
                    oi.zero_() if bi is None else oi.copy_(bi.expand_as(oi))
                    continue
                for p in range(start, end):
                    x, y = v[p if v_idx is None else v_idx[p]], dh[k_idx[p]]
                    if not sparse_left:
                        x, y = y, x
                    if p > start:
                        oi.addmm_(x, y)
                    elif bi is None:
                        torch.mm(x, y, out=oi)
                    else:
                        torch.addmm(bi, x, y, out=oi)
        return run

    free, items = dense.shape[free_dim], Z * H * lines
    work = Z * layout.nnz * blk * blk * free
    threads = threads_for(work)
    if threads > 1 and free >= threads * FREE_SPLIT_MIN:
        def slice_task(f0: int, f1: int) -> None:
            lines_of(dense.narrow(free_dim, f0, f1 - f0), out.narrow(free_dim, f0, f1 - f0), True, f0)(0, items)

        bounds = [free * t // threads for t in range(threads + 1)]
        run_tasks([functools.partial(slice_task, f0, f1) for f0, f1 in zip(bounds, bounds[1:])])
    else:
        costs = [max(1, ptr[j + 1] - ptr[j]) for j in range(H * lines)] * Z
        run_items(costs, lines_of(dense, out, threads == 1), work)
    return out
