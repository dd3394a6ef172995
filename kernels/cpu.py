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

Threads: each block GEMM uses torch's intra-op thread count. With more than one thread every GEMM
ends in a barrier, so on an oversubscribed machine this path loses more than one big dense GEMM
does (measured here at 2 threads with a load average of ~7 on 2 cores: anywhere from 4x faster
than dense to 0.4x); 1 thread is the configuration measured against the issue's target.
"""

from __future__ import annotations

import torch

from .layout import BlockLayout

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


def dsd_reference(values: torch.Tensor, trans_s: bool, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    """out[z, h] = S_h @ b[z, h] (S_h^T @ b[z, h] if trans_s) with S given by `values` at `layout`."""
    lay, blk = layout.to(b.device), layout.block
    Z, H, K, N = b.shape
    out_rows, k_idx, row_idx, s = ((layout.cols, lay.row_idx, lay.col_idx, values.mT) if trans_s else
                                   (layout.rows, lay.col_idx, lay.row_idx, values))
    b_rows = b.reshape(Z, H, K // blk, blk, N)[:, lay.head_idx, k_idx]  # [Z, nnz, blk, N]
    products = torch.matmul(s, b_rows)
    out = b.new_zeros(Z, H * out_rows, blk, N)
    out.index_add_(1, lay.head_idx * out_rows + row_idx, products)
    return out.reshape(Z, H, out_rows * blk, N)


def dds_reference(a: torch.Tensor, values: torch.Tensor, trans_s: bool, layout: BlockLayout) -> torch.Tensor:
    """out[z, h] = a[z, h] @ S_h (a[z, h] @ S_h^T if trans_s)."""
    lay, blk = layout.to(a.device), layout.block
    Z, H, M, K = a.shape
    out_cols, k_idx, col_idx, s = ((layout.rows, lay.col_idx, lay.row_idx, values.mT) if trans_s else
                                   (layout.cols, lay.row_idx, lay.col_idx, values))
    a_cols = a.reshape(Z, H, M, K // blk, blk).permute(0, 1, 3, 2, 4)[:, lay.head_idx, k_idx]  # [Z, nnz, M, blk]
    products = torch.matmul(a_cols, s)
    out = a.new_zeros(Z, H * out_cols, M, blk)
    out.index_add_(1, lay.head_idx * out_cols + col_idx, products)
    return out.reshape(Z, H, out_cols, M, blk).permute(0, 1, 3, 2, 4).reshape(Z, H, M, out_cols * blk)


# ---------------------------------------------------------------------------------------------
# CPU fast path: one BLAS call per stored block, straight into output views

# Multiply-adds per block GEMM below which the ~10 us Python + dispatch cost of each call outweighs
# the copies of the gathering reference path (measured: 64 tokens x 32-blocks is faster gathered,
# 512 tokens x 32-blocks faster per block).
LOOP_MIN_BLOCK_WORK = 1 << 17


def _small(free: int, layout: BlockLayout) -> bool:
    return free * layout.block * layout.block < LOOP_MIN_BLOCK_WORK


def sdd_cpu(a: torch.Tensor, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    blk, host = layout.block, layout.host
    Z, H, M, K = a.shape
    if _small(K, layout):
        return sdd_reference(a, b, layout)
    out = a.new_empty(Z, layout.nnz, blk, blk)
    heads, rows, cols = host["head_idx"], host["row_idx"], host["col_idx"]
    for z in range(Z):
        az, bz, oz = a[z], b[z], out[z]
        for p in range(layout.nnz):
            h, r, c = heads[p], rows[p], cols[p]
            torch.mm(az[h, r * blk:(r + 1) * blk], bz[h, :, c * blk:(c + 1) * blk], out=oz[p])
    return out


def dsd_cpu(values: torch.Tensor, trans_s: bool, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    if _small(b.shape[-1], layout):
        return dsd_reference(values, trans_s, b, layout)
    return _lines_cpu(values, trans_s, b, layout, sparse_left=True)


def dds_cpu(a: torch.Tensor, values: torch.Tensor, trans_s: bool, layout: BlockLayout) -> torch.Tensor:
    if _small(a.shape[-2], layout):
        return dds_reference(a, values, trans_s, layout)
    return _lines_cpu(values, trans_s, a, layout, sparse_left=False)


def _lines_cpu(values: torch.Tensor, trans_s: bool, dense: torch.Tensor, layout: BlockLayout,
               sparse_left: bool) -> torch.Tensor:
    """DSD, op(S) @ dense (sparse_left), or DDS, dense @ op(S), one output line at a time: a block-row
    of the DSD output (contiguous rows) or a block-column of the DDS output (a column slice, which
    BLAS also takes in place through its leading dimension: no copy)."""
    blk, host = layout.block, layout.host
    Z, H, rows, cols = dense.shape
    if sparse_left != trans_s:  # the lines are S's block-rows (CSR order)
        lines, ptr, k_idx, v_idx = layout.rows, host["row_ptr"], host["col_idx"], None
    else:  # S's block-columns (CSC order)
        lines, ptr, k_idx, v_idx = layout.cols, host["col_ptr"], host["csc_row_idx"], host["csc_value_idx"]
    if sparse_left:
        out = dense.new_empty(Z, H, lines * blk, cols)
    else:
        out = dense.new_empty(Z, H, rows, lines * blk)

    def part(x: torch.Tensor, j: int) -> torch.Tensor:  # block-row (DSD) or block-column (DDS) j
        return x[j * blk:(j + 1) * blk] if sparse_left else x[:, j * blk:(j + 1) * blk]

    for z in range(Z):
        vz = values[z].mT if trans_s else values[z]
        for h in range(H):
            dh, oh = dense[z, h], out[z, h]
            for i in range(lines):
                start, end = ptr[h * lines + i], ptr[h * lines + i + 1]
                oi = part(oh, i)
                if start == end:
                    oi.zero_()
                    continue
                for p in range(start, end):
                    v, d = vz[p if v_idx is None else v_idx[p]], part(dh, k_idx[p])
                    x, y = (v, d) if sparse_left else (d, v)
                    if p == start:
                        torch.mm(x, y, out=oi)
                    else:
                        oi.addmm_(x, y)
    return out
