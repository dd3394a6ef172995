"""BlockLayout: which (block-row, block-column) tiles of a matrix are stored.

A layout is a boolean block mask of shape ``[rows, cols]`` or ``[heads, rows, cols]`` (in blocks)
plus a block size. Values of a block-sparse matrix live in a separate tensor of shape
``[..., nnz, block, block]`` in row-major order of the mask's non-zeros (head, then row, then
column), which is also the order torch's BSR tensors use, so conversion is zero-copy.

Everything a kernel needs is precomputed once, at construction:

* row-ordered (CSR) indices: ``row_ptr`` over the ``heads * rows`` block-rows and ``col_idx``;
* column-ordered (CSC) indices: ``col_ptr`` over the ``heads * cols`` block-columns, ``csc_row_idx``
  and ``csc_value_idx`` (where each column-ordered block sits in the value tensor), so transposed
  products and backward passes never sort;
* ``row_order`` / ``col_order``: block-rows / block-columns by decreasing block count, so GPU
  programs start the longest rows first;
* the same indices as Python lists for the CPU path, which walks them in Python.

``layout.to(device)`` returns the same layout with its index tensors on ``device``; the result is
memoized, so calling it on every matmul costs a dict lookup.

The mask is cloned at construction and must not be modified afterwards: a layout is immutable.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

BLOCK_SIZES = (16, 32, 64, 128)


_INDEX_NAMES = ("row_ptr", "col_idx", "row_idx", "head_idx", "col_ptr", "csc_row_idx", "csc_value_idx",
                "row_order", "col_order")


def _check_block(block: int) -> int:
    if not isinstance(block, int) or isinstance(block, bool) or block not in BLOCK_SIZES:
        raise ValueError(f"block size must be one of {', '.join(map(str, BLOCK_SIZES))}, got {block!r}")
    return block


def _blocks(shape: tuple[int, ...], block: int) -> tuple[int, ...]:
    """Element shape (rows, cols) or (heads, rows, cols) -> block shape, checking divisibility."""
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (rows, cols) or (heads, rows, cols), got {tuple(shape)}")
    *heads, rows, cols = (int(s) for s in shape)
    if rows <= 0 or cols <= 0 or any(h <= 0 for h in heads):
        raise ValueError(f"shape must be positive, got {tuple(shape)}")
    if rows % block or cols % block:
        raise ValueError(f"shape {tuple(shape)} is not divisible by block size {block}")
    return (*heads, rows // block, cols // block)


@dataclass(frozen=True, eq=False)
class BlockLayout:
    """Immutable block-sparsity pattern; see the module docstring."""

    mask: torch.Tensor
    block: int
    device: torch.device = field(init=False)  # where the index tensors live; see `to`
    # Derived at construction (CPU int64 unless `device` says otherwise).
    row_ptr: torch.Tensor = field(init=False, repr=False)
    col_idx: torch.Tensor = field(init=False, repr=False)
    row_idx: torch.Tensor = field(init=False, repr=False)
    head_idx: torch.Tensor = field(init=False, repr=False)
    col_ptr: torch.Tensor = field(init=False, repr=False)
    csc_row_idx: torch.Tensor = field(init=False, repr=False)
    csc_value_idx: torch.Tensor = field(init=False, repr=False)
    row_order: torch.Tensor = field(init=False, repr=False)
    col_order: torch.Tensor = field(init=False, repr=False)
    host: dict = field(init=False, repr=False)
    _by_device: dict = field(init=False, repr=False)

    def __post_init__(self):
        _check_block(self.block)
        mask = torch.as_tensor(self.mask)
        if mask.dim() not in (2, 3):
            raise ValueError(f"block mask must be [rows, cols] or [heads, rows, cols], got {mask.dim()} dims")
        if mask.numel() == 0:
            raise ValueError(f"block mask must not be empty, got shape {tuple(mask.shape)}")
        mask = mask.detach().to("cpu", torch.bool).clone()
        set_ = object.__setattr__
        set_(self, "mask", mask)
        set_(self, "device", torch.device("cpu"))
        heads, rows, cols = self.heads_or_one, self.rows, self.cols
        nz = mask.reshape(heads, rows, cols).nonzero()  # row-major: head, row, col
        head, row, col = nz.unbind(1)
        head_row = head * rows + row
        row_ptr = torch.zeros(heads * rows + 1, dtype=torch.int64)
        row_ptr[1:] = torch.bincount(head_row, minlength=heads * rows).cumsum(0)
        head_col = head * cols + col
        # stable sort by block-column keeps rows ascending inside each column
        csc_value_idx = torch.sort(head_col, stable=True).indices
        col_ptr = torch.zeros(heads * cols + 1, dtype=torch.int64)
        col_ptr[1:] = torch.bincount(head_col, minlength=heads * cols).cumsum(0)
        # GPU programs take the longest block-rows (columns) first so short ones fill the tail
        row_order = torch.sort(row_ptr.diff(), descending=True, stable=True).indices
        col_order = torch.sort(col_ptr.diff(), descending=True, stable=True).indices
        indices = dict(
            row_ptr=row_ptr, col_idx=col.contiguous(), row_idx=row.contiguous(), head_idx=head.contiguous(),
            col_ptr=col_ptr, csc_row_idx=row[csc_value_idx].contiguous(), csc_value_idx=csc_value_idx,
            row_order=row_order, col_order=col_order,
        )
        for name, value in indices.items():
            set_(self, name, value)
        set_(self, "host", {name: value.tolist() for name, value in indices.items()})
        set_(self, "_by_device", {torch.device("cpu"): self})

    # ---- shape -----------------------------------------------------------------------------
    @property
    def has_heads(self) -> bool:
        return self.mask.dim() == 3

    @property
    def heads_or_one(self) -> int:
        return self.mask.shape[0] if self.has_heads else 1

    @property
    def rows(self) -> int:
        """Block-rows."""
        return self.mask.shape[-2]

    @property
    def cols(self) -> int:
        """Block-columns."""
        return self.mask.shape[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        """Element shape of the matrix this layout describes: (rows, cols) or (heads, rows, cols)."""
        return (*self.mask.shape[:-2], self.rows * self.block, self.cols * self.block)

    @property
    def nnz(self) -> int:
        return len(self.host["col_idx"])

    @property
    def density(self) -> float:
        return self.nnz / self.mask.numel()

    def values_shape(self, *batch: int) -> tuple[int, ...]:
        return (*batch, self.nnz, self.block, self.block)

    def __repr__(self) -> str:
        return (f"BlockLayout(shape={self.shape}, block={self.block}, nnz={self.nnz}, "
                f"density={self.density:.3f}, device={self.device})")

    # ---- device cache ----------------------------------------------------------------------
    def to(self, device) -> "BlockLayout":
        """This layout with its index tensors on `device` (memoized: the same object each call)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        cached = self._by_device.get(device)
        if cached is None:
            cached = object.__new__(BlockLayout)
            for name in ("mask", "block", "host", "_by_device"):
                object.__setattr__(cached, name, getattr(self, name))
            object.__setattr__(cached, "device", device)
            for name in _INDEX_NAMES:
                object.__setattr__(cached, name, getattr(self, name).to(device))
            self._by_device[device] = cached
        return cached

    def transpose_permutation(self) -> torch.Tensor:
        """Value order of the transposed layout: ``vals[..., perm, :, :].mT`` are its values."""
        return self.csc_value_idx

    def transposed(self) -> "BlockLayout":
        """The layout of the transposed matrix (a new layout; values need `transpose_permutation`)."""
        return BlockLayout(self.mask.transpose(-1, -2), self.block).to(self.device)

    # ---- values <-> dense ------------------------------------------------------------------
    def _dense_blocks(self, dense: torch.Tensor) -> torch.Tensor:
        if tuple(dense.shape[-self.mask.dim():]) != self.shape:
            raise ValueError(f"dense matrix shape {tuple(dense.shape)} does not end with layout shape {self.shape}")
        b, batch = self.block, dense.shape[: dense.dim() - self.mask.dim()]
        heads = self.heads_or_one
        # [..., H, R, b, C, b] -> [..., H, R, C, b, b]
        return dense.reshape(*batch, heads, self.rows, b, self.cols, b).transpose(-3, -2)

    def values_from_dense(self, dense: torch.Tensor) -> torch.Tensor:
        """Gather the layout's blocks of `dense` ([..., (heads,) M, N]) into [..., nnz, block, block]."""
        blocks = self._dense_blocks(dense)
        lay = self.to(dense.device)
        return blocks[..., lay.head_idx, lay.row_idx, lay.col_idx, :, :].contiguous()

    def to_dense(self, values: torch.Tensor) -> torch.Tensor:
        """Scatter values [..., nnz, block, block] into a dense [..., (heads,) M, N] with zeros elsewhere."""
        self.check_values(values)
        lay, b, batch = self.to(values.device), self.block, values.shape[:-3]
        out = values.new_zeros(*batch, self.heads_or_one, self.rows, self.cols, b, b)
        out[..., lay.head_idx, lay.row_idx, lay.col_idx, :, :] = values
        out = out.transpose(-3, -2).reshape(*batch, self.heads_or_one, self.rows * b, self.cols * b)
        return out if self.has_heads else out.squeeze(-3)

    def dense_mask(self) -> torch.Tensor:
        """Element-level boolean mask of shape `self.shape`."""
        b = self.block
        return self.mask.repeat_interleave(b, dim=-2).repeat_interleave(b, dim=-1)

    def check_values(self, values: torch.Tensor, name: str = "block values") -> None:
        """TypeError / ValueError (one line, naming the mismatch) unless `values` ([..., nnz, b, b])
        hold this layout's blocks."""
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
        want = f"[..., {self.nnz}, {self.block}, {self.block}]"
        if values.dim() < 3:
            raise ValueError(f"{name} must have shape {want} for this layout, got {tuple(values.shape)}")
        if tuple(values.shape[-2:]) != (self.block, self.block):
            raise ValueError(f"{name} hold {values.shape[-2]}x{values.shape[-1]} blocks but the layout's block is "
                             f"{self.block} (want {want}, got {tuple(values.shape)})")
        if values.shape[-3] != self.nnz:
            raise ValueError(f"{name} hold {values.shape[-3]} blocks (dim -3) but the layout stores {self.nnz} "
                             f"(want {want}, got {tuple(values.shape)})")

    # ---- torch BSR -------------------------------------------------------------------------
    def to_bsr(self, values: torch.Tensor) -> torch.Tensor:
        """A torch BSR tensor sharing `values`' storage ([nnz, b, b] for a 2-D layout; with heads, every
        head must have the same number of blocks and the BSR tensor gets a leading batch dim)."""
        self.check_values(values)
        if values.dim() != 3:
            raise ValueError(f"to_bsr takes values of shape [nnz, block, block], got {tuple(values.shape)}")
        lay = self.to(values.device)
        if not self.has_heads:
            return _bsr(lay.row_ptr, lay.col_idx, values, self.shape)
        heads = self.mask.shape[0]
        per_head = self.mask.reshape(heads, -1).sum(1)
        if not bool((per_head == per_head[0]).all()):
            raise ValueError("to_bsr with heads needs the same number of blocks in every head (a torch BSR rule)")
        n = int(per_head[0])
        crow = (lay.row_ptr[:-1].reshape(heads, self.rows) - lay.row_ptr[0:-1:self.rows][:, None])
        crow = torch.cat([crow, torch.full((heads, 1), n, dtype=torch.int64, device=crow.device)], 1)
        return _bsr(crow, lay.col_idx.reshape(heads, n), values.view(heads, n, *values.shape[1:]), self.shape)

    @staticmethod
    def from_bsr(bsr: torch.Tensor) -> tuple["BlockLayout", torch.Tensor]:
        """(layout, values) from a torch BSR tensor with square blocks; `values` is a view of its values."""
        if not isinstance(bsr, torch.Tensor) or bsr.layout != torch.sparse_bsr:
            raise TypeError(f"from_bsr needs a torch.sparse_bsr tensor, got {getattr(bsr, 'layout', type(bsr))}")
        values = bsr.values()
        b0, b1 = values.shape[-2:]
        if b0 != b1:
            raise ValueError(f"from_bsr needs square blocks, got {b0}x{b1}")
        _check_block(int(b0))
        crow, col = bsr.crow_indices().cpu(), bsr.col_indices().cpu()
        *batch, rows, cols = bsr.shape
        if len(batch) > 1:
            raise ValueError(f"from_bsr takes a 2-D or 3-D BSR tensor, got shape {tuple(bsr.shape)}")
        crow, col = crow.reshape(-1, crow.shape[-1]), col.reshape(-1, col.shape[-1])
        heads = crow.shape[0]
        mask = torch.zeros(heads, rows // b0, cols // b0, dtype=torch.bool)
        for h in range(heads):
            row = torch.repeat_interleave(torch.arange(rows // b0), crow[h].diff())
            mask[h, row, col[h]] = True
            if not bool((crow[h].diff() >= 0).all()) or (row.numel() and not _sorted_unique(row, col[h])):
                raise ValueError("from_bsr needs sorted, duplicate-free column indices (call .coalesce() first)")
        layout = BlockLayout(mask if batch else mask[0], int(b0))
        return layout, values.reshape(layout.nnz, b0, b0)

    # ---- builders --------------------------------------------------------------------------
    @staticmethod
    def dense(shape, block: int) -> "BlockLayout":
        """Every block present."""
        return BlockLayout(torch.ones(_blocks(tuple(shape), _check_block(block)), dtype=torch.bool), block)

    @staticmethod
    def random(shape, block: int, density: float, seed: int = 0) -> "BlockLayout":
        """round(density * blocks) blocks per head, chosen uniformly with a seeded generator."""
        grid = _blocks(tuple(shape), _check_block(block))
        _check_density(density)
        gen = torch.Generator().manual_seed(int(seed))
        *heads, rows, cols = grid
        count = int(round(density * rows * cols))
        masks = []
        for _ in range(heads[0] if heads else 1):
            flat = torch.zeros(rows * cols, dtype=torch.bool)
            flat[torch.randperm(rows * cols, generator=gen)[:count]] = True
            masks.append(flat.reshape(rows, cols))
        return BlockLayout(torch.stack(masks) if heads else masks[0], block)

    @staticmethod
    def banded(shape, block: int, width: int, causal: bool = False) -> "BlockLayout":
        """Local attention: block (r, c) is present when |r - c| <= width (and c <= r if causal)."""
        grid = _blocks(tuple(shape), _check_block(block))
        if width < 0:
            raise ValueError(f"band width must be >= 0 blocks, got {width}")
        r = torch.arange(grid[-2])[:, None]
        c = torch.arange(grid[-1])[None, :]
        mask = (r - c).abs() <= width
        if causal:
            mask &= c <= r
        return BlockLayout(mask.expand(grid).clone(), block)

    @staticmethod
    def strided(shape, block: int, stride: int, causal: bool = True) -> "BlockLayout":
        """Sparse Transformer strided pattern in blocks: row r sees the previous `stride` blocks
        (r - stride < c <= r) and every block c with (r - c) divisible by `stride`."""
        grid = _blocks(tuple(shape), _check_block(block))
        if stride < 1:
            raise ValueError(f"stride must be >= 1 block, got {stride}")
        r = torch.arange(grid[-2])[:, None]
        c = torch.arange(grid[-1])[None, :]
        mask = ((r - c).abs() < stride) | ((r - c) % stride == 0)
        if causal:
            mask &= c <= r
        return BlockLayout(mask.expand(grid).clone(), block)

    @staticmethod
    def fixed(shape, block: int, stride: int, summary: int = 1, causal: bool = True) -> "BlockLayout":
        """Sparse Transformer fixed pattern in blocks: row r sees its own chunk of `stride` blocks and
        the last `summary` blocks of every chunk."""
        grid = _blocks(tuple(shape), _check_block(block))
        if stride < 1 or not 1 <= summary <= stride:
            raise ValueError(f"fixed pattern needs stride >= 1 and 1 <= summary <= stride, got {stride}, {summary}")
        r = torch.arange(grid[-2])[:, None]
        c = torch.arange(grid[-1])[None, :]
        mask = (r // stride == c // stride) | (c % stride >= stride - summary)
        if causal:
            mask &= c <= r
        return BlockLayout(mask.expand(grid).clone(), block)

    @staticmethod
    def from_dense(matrix: torch.Tensor, block: int, density: float | None = None,
                   threshold: float | None = None) -> "BlockLayout":
        """Keep the blocks of `matrix` ([M, N] or [heads, M, N]) with the largest Frobenius norms:
        the top `density` fraction (per head), or those with norm > `threshold`. Give exactly one."""
        if (density is None) == (threshold is None):
            raise ValueError("from_dense needs exactly one of density= or threshold=")
        grid = _blocks(tuple(matrix.shape), _check_block(block))
        *heads, rows, cols = grid
        m = matrix.detach().reshape(-1, rows, block, cols, block)
        norms = m.to(torch.float64).square().sum((2, 4)).sqrt().cpu()  # [H, R, C]
        if threshold is not None:
            mask = norms > threshold
        else:
            _check_density(density)
            count = int(round(density * rows * cols))
            mask = torch.zeros_like(norms, dtype=torch.bool).reshape(norms.shape[0], -1)
            if count:
                # stable order on ties: sort by norm descending, then by position
                order = torch.sort(norms.reshape(norms.shape[0], -1), dim=1, descending=True, stable=True).indices
                mask.scatter_(1, order[:, :count], True)
            mask = mask.reshape(norms.shape)
        return BlockLayout(mask if heads else mask[0], block)


def _bsr(crow, col, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # "beta state" notice on every call
        return torch.sparse_bsr_tensor(crow, col, values, size=shape, dtype=values.dtype,
                                       device=values.device, check_invariants=False)


def _check_density(density) -> None:
    if not isinstance(density, (int, float)) or not 0.0 <= density <= 1.0 or math.isnan(density):
        raise ValueError(f"density must be a number in [0, 1], got {density!r}")


def _sorted_unique(row: torch.Tensor, col: torch.Tensor) -> bool:
    key = row * (int(col.max()) + 1 if col.numel() else 1) + col
    return bool((key.diff() > 0).all())
