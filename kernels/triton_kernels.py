"""Triton kernels for the three block-sparse products, driven by the layout's CSR / CSC indices.

Imported only by `matmul._products("triton")`, never by ``import spintui.kernels``. Under
``TRITON_INTERPRET=1`` (set before this module is imported) the same kernels run on CPU tensors
through Triton's interpreter, which is how the tests check them without a GPU.

Work decomposition (operands in the internal form of cpu.py: dense [Z, H, rows, cols] with any
strides, values [Z, nnz, block, block]):

* DSD, C = S @ B: one program per (block-row of S, BLOCK_N columns, batch). It walks the row's
  stored blocks through ``row_ptr`` / ``col_idx`` (for S^T: ``col_ptr`` / ``csc_row_idx`` /
  ``csc_value_idx`` with the block read transposed through its strides) and accumulates
  ``block x block`` @ ``block x BLOCK_N`` tiles in fp32. Block-rows are the fastest grid axis, so
  programs running together share one column strip of B in L2; they start with the longest rows
  (``row_order``) so the tail is short rows.
* DDS, C = A @ S: one program per (block-column of S, BLOCK_M rows, batch), walking the column's
  blocks (``col_ptr``; for S^T the row indices), accumulating ``BLOCK_M x block`` @ ``block x block``.
  DSD and DDS are one kernel (``_line_kernel``): a "line" is a block-row of a DSD output or a
  block-column of a DDS output, and the constexpr SPARSE_LEFT picks the tile orientation.
* SDD, values = (A @ B) at the layout: one program per (stored block, batch), a ``block x block``
  tile reduced over K in BLOCK_K steps.

The free dimension (N for DSD, M for DDS, K for SDD) is masked, so it may be any size. fp32 inputs
use TF32 tensor cores (``input_precision="tf32"``); every kernel accumulates in fp32 and stores the
input dtype. Meta-parameters come from tuning.json, keyed by GPU name with a "default" entry.
DSD and DDS also have a persistent variant (``"PERSISTENT": true`` in the table): a fixed number of
programs per SM, each looping over output tiles; timed (DSD) on an H200 it was slower than the plain
grid, so it is off. Not done: merging short rows / splitting long ones, TMA loads. Measured on an H200 (bf16,
8192^3, density 10%, tuned entries): DSD 5.2x dense cuBLAS with blocks of 64 and 128, 3.3x with 32,
about half the ideal 10x; tuning.json's defaults were 10-20% slower there.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import triton
import triton.language as tl

from .layout import BlockLayout

TUNING_FILE = Path(__file__).with_name("tuning.json")


@functools.lru_cache(maxsize=None)
def _tuning_table() -> dict:
    return json.loads(TUNING_FILE.read_text())


# Entries here win over tuning.json (the tests and a tuning sweep set them), e.g.
# OVERRIDES["dsd"] = {"BLOCK_N": 64, "PERSISTENT": True}.
OVERRIDES: dict[str, dict] = {}


def meta_parameters(mode: str, block: int, dtype: torch.dtype, device: torch.device) -> dict:
    """Tile sizes, warps, stages and variant for a product: an override, else the GPU's own entry
    in tuning.json, else its "default" entry."""
    table = _tuning_table()
    if mode in OVERRIDES:
        return dict(OVERRIDES[mode])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "interpreter"
    key = f"{mode}/b{block}/{str(dtype).removeprefix('torch.')}"
    for entry in (table.get(name, {}), table["default"]):
        for k in (key, f"{mode}/b{block}", mode):
            if k in entry:
                return dict(entry[k])
    raise KeyError(f"tuning.json has no default entry for {mode}")


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs run on TF32 tensor cores; for fp16 / bf16 inputs the setting has no effect
    return "tf32"


@triton.jit
def _line_tile(values, dense, out, ptr, k_idx, v_idx, line, pid_f, z,
               FREE, out_lines,
               s_vz, s_vp, s_vr, s_vc,
               s_dz, s_dh, s_dk, s_df,
               s_oz, s_oh, s_ol, s_of,
               BLOCK: tl.constexpr, BLOCK_F: tl.constexpr, SPARSE_LEFT: tl.constexpr,
               INDIRECT_VALUES: tl.constexpr, PRECISION: tl.constexpr):
    """One output tile of the line `line` (global: head * out_lines + i), BLOCK_F wide along the free
    dimension. SPARSE_LEFT (DSD): block x BLOCK_F += S block @ dense rows; else (DDS):
    BLOCK_F x block += dense columns @ S block. Strides are (z, head, summed dim, free dim) for the
    dense operand and (z, head, line dim, free dim) for the output."""
    head = line // out_lines
    i = line % out_lines
    offs = tl.arange(0, BLOCK)
    offs_f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F).to(tl.int64)  # offsets * strides may pass 2^31
    f_ok = offs_f < FREE
    values += z * s_vz
    dense += z * s_dz + head * s_dh
    if SPARSE_LEFT:
        acc = tl.zeros((BLOCK, BLOCK_F), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_F, BLOCK), dtype=tl.float32)
    start = tl.load(ptr + line)
    end = tl.load(ptr + line + 1)
    for p in range(start, end):
        k = tl.load(k_idx + p)
        if INDIRECT_VALUES:
            v = tl.load(v_idx + p)
        else:
            v = p
        s_tile = tl.load(values + v * s_vp + offs[:, None] * s_vr + offs[None, :] * s_vc)
        if SPARSE_LEFT:
            d_tile = tl.load(dense + (k * BLOCK + offs)[:, None] * s_dk + offs_f[None, :] * s_df,
                             mask=f_ok[None, :], other=0.0)
            acc = tl.dot(s_tile, d_tile, acc, input_precision=PRECISION)
        else:
            d_tile = tl.load(dense + offs_f[:, None] * s_df + (k * BLOCK + offs)[None, :] * s_dk,
                             mask=f_ok[:, None], other=0.0)
            acc = tl.dot(d_tile, s_tile, acc, input_precision=PRECISION)
    if SPARSE_LEFT:
        out_ptrs = out + z * s_oz + head * s_oh + (i * BLOCK + offs)[:, None] * s_ol + offs_f[None, :] * s_of
        tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=f_ok[None, :])
    else:
        out_ptrs = out + z * s_oz + head * s_oh + offs_f[:, None] * s_of + (i * BLOCK + offs)[None, :] * s_ol
        tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=f_ok[:, None])


@triton.jit
def _line_kernel(values, dense, out, ptr, k_idx, v_idx, order,
                 FREE, out_lines, line_count, f_tiles, tile_count,
                 s_vz, s_vp, s_vr, s_vc,
                 s_dz, s_dh, s_dk, s_df,
                 s_oz, s_oh, s_ol, s_of,
                 BLOCK: tl.constexpr, BLOCK_F: tl.constexpr, SPARSE_LEFT: tl.constexpr,
                 INDIRECT_VALUES: tl.constexpr, PERSISTENT: tl.constexpr, PRECISION: tl.constexpr):
    """DSD or DDS. Plain: one program per (line slot in `order`, free tile, batch), lines fastest.
    PERSISTENT: a fixed number of programs (a few per SM), each walking tiles in that same order;
    saves per-program launch and prologue work when lines hold only a handful of blocks."""
    if PERSISTENT:
        for tile in range(tl.program_id(0), tile_count, tl.num_programs(0)):
            rest = tile // line_count
            _line_tile(values, dense, out, ptr, k_idx, v_idx, tl.load(order + tile % line_count), rest % f_tiles,
                       (rest // f_tiles).to(tl.int64), FREE, out_lines, s_vz, s_vp, s_vr, s_vc, s_dz, s_dh, s_dk,
                       s_df, s_oz, s_oh, s_ol, s_of, BLOCK, BLOCK_F, SPARSE_LEFT, INDIRECT_VALUES, PRECISION)
    else:
        _line_tile(values, dense, out, ptr, k_idx, v_idx, tl.load(order + tl.program_id(0)), tl.program_id(1),
                   tl.program_id(2).to(tl.int64), FREE, out_lines, s_vz, s_vp, s_vr, s_vc, s_dz, s_dh, s_dk,
                   s_df, s_oz, s_oh, s_ol, s_of, BLOCK, BLOCK_F, SPARSE_LEFT, INDIRECT_VALUES, PRECISION)


@triton.jit
def _sdd_kernel(a, b, out, head_idx, row_idx, col_idx,
                K,
                s_az, s_ah, s_am, s_ak,
                s_bz, s_bh, s_bk, s_bn,
                s_oz, s_op, s_or, s_oc,
                BLOCK: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    p = tl.program_id(0)
    z = tl.program_id(1).to(tl.int64)
    head = tl.load(head_idx + p)
    r = tl.load(row_idx + p)
    c = tl.load(col_idx + p)
    offs = tl.arange(0, BLOCK)
    offs_k = tl.arange(0, BLOCK_K).to(tl.int64)
    a_ptrs = a + z * s_az + head * s_ah + (r * BLOCK + offs)[:, None] * s_am + offs_k[None, :] * s_ak
    b_ptrs = b + z * s_bz + head * s_bh + offs_k[:, None] * s_bk + (c * BLOCK + offs)[None, :] * s_bn
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + offs_k) < K
        a_tile = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
        b_tile = tl.load(b_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a_tile, b_tile, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K * s_ak
        b_ptrs += BLOCK_K * s_bk
    out_ptrs = out + z * s_oz + p * s_op + offs[:, None] * s_or + offs[None, :] * s_oc
    tl.store(out_ptrs, acc.to(out.dtype.element_ty))


def _program_slots(device: torch.device, meta: dict) -> int:
    """Programs for a persistent launch: PROGRAMS_PER_SM per streaming multiprocessor."""
    per_sm = meta.get("PROGRAMS_PER_SM", 2)
    if device.type != "cuda":
        return 4 * per_sm  # interpreter: few programs, many tiles each, to exercise the tile loop
    return torch.cuda.get_device_properties(device).multi_processor_count * per_sm


def _launch_options(meta: dict) -> dict:
    return {k: meta[k] for k in ("num_warps", "num_stages") if k in meta}


def _line_product(values: torch.Tensor, trans_s: bool, dense: torch.Tensor, layout: BlockLayout,
                  sparse_left: bool) -> torch.Tensor:
    """DSD, op(S) @ dense (sparse_left), or DDS, dense @ op(S): the output's block-rows (DSD) or
    block-columns (DDS) are its lines."""
    lay, blk = layout.to(dense.device), layout.block
    by_rows = sparse_left != trans_s  # the lines are S's block-rows (CSR order) or block-columns (CSC)
    if by_rows:
        ptr, k_idx, v_idx, order, lines = lay.row_ptr, lay.col_idx, lay.col_idx, lay.row_order, layout.rows
    else:
        ptr, k_idx, v_idx, order, lines = lay.col_ptr, lay.csc_row_idx, lay.csc_value_idx, lay.col_order, layout.cols
    s = values.mT if trans_s else values
    d = dense if sparse_left else dense.mT  # [Z, H, summed, free]
    Z, H, _, free = d.shape
    out = d.new_empty(Z, H, lines * blk, free) if sparse_left else d.new_empty(Z, H, free, lines * blk)
    o = out if sparse_left else out.mT  # [Z, H, lines * block, free]
    meta = meta_parameters("dsd" if sparse_left else "dds", blk, d.dtype, d.device)
    block_f = meta["BLOCK_N" if sparse_left else "BLOCK_M"]
    line_count, f_tiles = H * lines, triton.cdiv(free, block_f)
    tile_count = line_count * f_tiles * Z
    persistent = bool(meta.get("PERSISTENT"))
    grid = (min(tile_count, _program_slots(d.device, meta)),) if persistent else (line_count, f_tiles, Z)
    _line_kernel[grid](s, d, o, ptr, k_idx, v_idx, order, free, lines, line_count, f_tiles, tile_count,
                       *s.stride(), *d.stride(), *o.stride(),
                       BLOCK=blk, BLOCK_F=block_f, SPARSE_LEFT=sparse_left, INDIRECT_VALUES=not by_rows,
                       PERSISTENT=persistent, PRECISION=_precision(d.dtype), **_launch_options(meta))
    return out


def dsd(values: torch.Tensor, trans_s: bool, b: torch.Tensor, layout: BlockLayout,
        bias: torch.Tensor | None = None) -> torch.Tensor:
    out = _line_product(values, trans_s, b, layout, sparse_left=True)
    return out if bias is None else out.add_(bias)


def dds(a: torch.Tensor, values: torch.Tensor, trans_s: bool, layout: BlockLayout,
        bias: torch.Tensor | None = None) -> torch.Tensor:
    out = _line_product(values, trans_s, a, layout, sparse_left=False)
    return out if bias is None else out.add_(bias)


def sdd(a: torch.Tensor, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    lay, blk = layout.to(a.device), layout.block
    Z, H, M, K = a.shape
    out = a.new_empty(Z, layout.nnz, blk, blk)
    if layout.nnz == 0:
        return out
    meta = meta_parameters("sdd", blk, a.dtype, a.device)
    grid = (layout.nnz, Z)
    _sdd_kernel[grid](a, b, out, lay.head_idx, lay.row_idx, lay.col_idx, K,
                      *a.stride(), *b.stride(), *out.stride(),
                      BLOCK=blk, BLOCK_K=meta["BLOCK_K"], PRECISION=_precision(a.dtype),
                      **_launch_options(meta))
    return out
