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
* SDD, values = (A @ B) at the layout: one program per (stored block, batch), a ``block x block``
  tile reduced over K in BLOCK_K steps.

The free dimension (N for DSD, M for DDS, K for SDD) is masked, so it may be any size. fp32 inputs
use TF32 tensor cores (``input_precision="tf32"``); every kernel accumulates in fp32 and stores the
input dtype. Meta-parameters come from tuning.json, keyed by GPU name with a "default" entry.
DSD also has a persistent variant (``"PERSISTENT": true`` in the table): a fixed number of programs
per SM, each looping over output tiles; timed on an H200 it was slower than the plain grid, so it
is off. Not done: merging short rows / splitting long ones, TMA loads. Measured on an H200 (bf16,
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
def _dsd_kernel(values, b, out, ptr, k_idx, v_idx, order,
                N, out_rows,
                s_vz, s_vp, s_vr, s_vc,
                s_bz, s_bh, s_bk, s_bn,
                s_oz, s_oh, s_om, s_on,
                BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, INDIRECT_VALUES: tl.constexpr,
                PRECISION: tl.constexpr):
    row = tl.load(order + tl.program_id(0))  # global block-row: head * out_rows + i
    pid_n = tl.program_id(1)
    z = tl.program_id(2).to(tl.int64)
    head = row // out_rows
    i = row % out_rows
    offs = tl.arange(0, BLOCK)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)  # offsets * strides may pass 2^31
    n_ok = offs_n < N
    values += z * s_vz
    b += z * s_bz + head * s_bh
    acc = tl.zeros((BLOCK, BLOCK_N), dtype=tl.float32)
    start = tl.load(ptr + row)
    end = tl.load(ptr + row + 1)
    for p in range(start, end):
        k = tl.load(k_idx + p)
        if INDIRECT_VALUES:
            v = tl.load(v_idx + p)
        else:
            v = p
        s_tile = tl.load(values + v * s_vp + offs[:, None] * s_vr + offs[None, :] * s_vc)
        b_tile = tl.load(b + (k * BLOCK + offs)[:, None] * s_bk + offs_n[None, :] * s_bn,
                         mask=n_ok[None, :], other=0.0)
        acc = tl.dot(s_tile, b_tile, acc, input_precision=PRECISION)
    out_ptrs = out + z * s_oz + head * s_oh + (i * BLOCK + offs)[:, None] * s_om + offs_n[None, :] * s_on
    tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=n_ok[None, :])


@triton.jit
def _dsd_persistent_kernel(values, b, out, ptr, k_idx, v_idx, order,
                           N, out_rows, row_count, n_tiles, tile_count,
                           s_vz, s_vp, s_vr, s_vc,
                           s_bz, s_bh, s_bk, s_bn,
                           s_oz, s_oh, s_om, s_on,
                           BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, INDIRECT_VALUES: tl.constexpr,
                           PRECISION: tl.constexpr):
    """DSD with a fixed number of programs (a few per SM), each walking output tiles in the same
    row-fastest order as the plain kernel; saves per-program launch and prologue work when rows
    hold only a handful of blocks."""
    offs = tl.arange(0, BLOCK)
    for tile in range(tl.program_id(0), tile_count, tl.num_programs(0)):
        row = tl.load(order + tile % row_count)
        rest = tile // row_count
        pid_n = rest % n_tiles
        z = (rest // n_tiles).to(tl.int64)
        head = row // out_rows
        i = row % out_rows
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)  # offsets * strides may pass 2^31
        n_ok = offs_n < N
        v_base = values + z * s_vz
        b_base = b + z * s_bz + head * s_bh
        acc = tl.zeros((BLOCK, BLOCK_N), dtype=tl.float32)
        start = tl.load(ptr + row)
        end = tl.load(ptr + row + 1)
        for p in range(start, end):
            k = tl.load(k_idx + p)
            if INDIRECT_VALUES:
                v = tl.load(v_idx + p)
            else:
                v = p
            s_tile = tl.load(v_base + v * s_vp + offs[:, None] * s_vr + offs[None, :] * s_vc)
            b_tile = tl.load(b_base + (k * BLOCK + offs)[:, None] * s_bk + offs_n[None, :] * s_bn,
                             mask=n_ok[None, :], other=0.0)
            acc = tl.dot(s_tile, b_tile, acc, input_precision=PRECISION)
        out_ptrs = out + z * s_oz + head * s_oh + (i * BLOCK + offs)[:, None] * s_om + offs_n[None, :] * s_on
        tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=n_ok[None, :])


@triton.jit
def _dds_kernel(a, values, out, ptr, k_idx, v_idx, order,
                M, out_cols,
                s_az, s_ah, s_am, s_ak,
                s_vz, s_vp, s_vr, s_vc,
                s_oz, s_oh, s_om, s_on,
                BLOCK: tl.constexpr, BLOCK_M: tl.constexpr, INDIRECT_VALUES: tl.constexpr,
                PRECISION: tl.constexpr):
    col = tl.load(order + tl.program_id(0))  # global block-column: head * out_cols + j
    pid_m = tl.program_id(1)
    z = tl.program_id(2).to(tl.int64)
    head = col // out_cols
    j = col % out_cols
    offs = tl.arange(0, BLOCK)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    m_ok = offs_m < M
    values += z * s_vz
    a += z * s_az + head * s_ah
    acc = tl.zeros((BLOCK_M, BLOCK), dtype=tl.float32)
    start = tl.load(ptr + col)
    end = tl.load(ptr + col + 1)
    for p in range(start, end):
        k = tl.load(k_idx + p)
        if INDIRECT_VALUES:
            v = tl.load(v_idx + p)
        else:
            v = p
        a_tile = tl.load(a + offs_m[:, None] * s_am + (k * BLOCK + offs)[None, :] * s_ak,
                         mask=m_ok[:, None], other=0.0)
        s_tile = tl.load(values + v * s_vp + offs[:, None] * s_vr + offs[None, :] * s_vc)
        acc = tl.dot(a_tile, s_tile, acc, input_precision=PRECISION)
    out_ptrs = out + z * s_oz + head * s_oh + offs_m[:, None] * s_om + (j * BLOCK + offs)[None, :] * s_on
    tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=m_ok[:, None])


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


def dsd(values: torch.Tensor, trans_s: bool, b: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    lay, blk = layout.to(b.device), layout.block
    Z, H, K, N = b.shape
    out_rows = layout.cols if trans_s else layout.rows
    out = b.new_empty(Z, H, out_rows * blk, N)
    if trans_s:  # rows of S^T are columns of S; its blocks are S's blocks read transposed
        ptr, k_idx, v_idx, order, s = lay.col_ptr, lay.csc_row_idx, lay.csc_value_idx, lay.col_order, values.mT
    else:
        ptr, k_idx, v_idx, order, s = lay.row_ptr, lay.col_idx, lay.col_idx, lay.row_order, values
    meta = meta_parameters("dsd", blk, b.dtype, b.device)
    block_n = meta["BLOCK_N"]
    row_count, n_tiles = H * out_rows, triton.cdiv(N, block_n)
    constants = dict(BLOCK=blk, BLOCK_N=block_n, INDIRECT_VALUES=trans_s, PRECISION=_precision(b.dtype),
                     **_launch_options(meta))
    if meta.get("PERSISTENT"):
        tile_count = row_count * n_tiles * Z
        grid = (min(tile_count, _program_slots(b.device, meta)),)
        _dsd_persistent_kernel[grid](s, b, out, ptr, k_idx, v_idx, order, N, out_rows, row_count, n_tiles,
                                     tile_count, *s.stride(), *b.stride(), *out.stride(), **constants)
    else:
        _dsd_kernel[(row_count, n_tiles, Z)](s, b, out, ptr, k_idx, v_idx, order, N, out_rows,
                                             *s.stride(), *b.stride(), *out.stride(), **constants)
    return out


def dds(a: torch.Tensor, values: torch.Tensor, trans_s: bool, layout: BlockLayout) -> torch.Tensor:
    lay, blk = layout.to(a.device), layout.block
    Z, H, M, K = a.shape
    out_cols = layout.rows if trans_s else layout.cols
    out = a.new_empty(Z, H, M, out_cols * blk)
    if trans_s:  # columns of S^T are rows of S
        ptr, k_idx, v_idx, order, s = lay.row_ptr, lay.col_idx, lay.col_idx, lay.row_order, values.mT
    else:
        ptr, k_idx, v_idx, order, s = lay.col_ptr, lay.csc_row_idx, lay.csc_value_idx, lay.col_order, values
    meta = meta_parameters("dds", blk, a.dtype, a.device)
    block_m = meta["BLOCK_M"]
    grid = (H * out_cols, triton.cdiv(M, block_m), Z)
    _dds_kernel[grid](a, s, out, ptr, k_idx, v_idx, order, M, out_cols,
                      *a.stride(), *s.stride(), *out.stride(),
                      BLOCK=blk, BLOCK_M=block_m, INDIRECT_VALUES=not trans_s, PRECISION=_precision(a.dtype),
                      **_launch_options(meta))
    return out


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
