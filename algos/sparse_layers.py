"""Block-sparse hidden layers for the six algorithms (`--block-density D --block-size B`).

Every hidden-to-hidden weight matrix of every MLP (actors, critics, value functions) becomes
block-sparse; input and output layers stay dense. `sparse_spec(config)` says whether a run asks for
that (density 1, the default, keeps every layer an nn.Linear-equivalent dense layer, so such runs
build exactly the networks they always did).

Layouts are random at the asked density and drawn from the run's seed, the network's name and the
layer's index, so the same config gives the same networks. Each draw first places one block in every
block-row and block-column (no unit is cut off), so very low densities round up to that minimum; the
number of blocks depends on the config alone. The layout's block mask is a buffer of the module that
holds the layer, so it is in every checkpoint, and loading a state dict takes the saved mask:
`spintui eval` and `--resume` rebuild exactly the networks that were trained.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spintui.algos.config import block_sparse_text
from spintui.kernels import BlockLayout, BlockSparseLinear


@dataclass(frozen=True)
class SparseSpec:
    """Which hidden layers are block-sparse and how: density, block size and the run's seed."""

    density: float
    block: int
    seed: int

    def layout(self, net: str, layer: int, in_features: int, out_features: int) -> BlockLayout:
        """The layout of weight `layer` ([out_features, in_features]) of network `net`."""
        # crc32, not hash(): Python salts string hashes per process
        seed = (self.seed * 1_000_003 + zlib.crc32(f"{net}/{layer}".encode())) % (2**63)
        return covering_layout(out_features, in_features, self.block, self.density, seed)

    def describe(self) -> str:
        return block_sparse_text(self.density, self.block)


def sparse_spec(config) -> SparseSpec | None:
    """The run's SparseSpec (from a config object or its dict in run.json / a checkpoint), None if dense."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    density = float(get("block_density", 1.0) or 1.0)
    if density >= 1.0:
        return None
    return SparseSpec(density, int(get("block_size", 32)), int(get("seed", 0)))


def covering_layout(rows_el: int, cols_el: int, block: int, density: float, seed: int) -> BlockLayout:
    """A seeded random layout of a [rows_el, cols_el] matrix with round(density * blocks) blocks, and
    at least one in every block-row and block-column."""
    rows, cols = rows_el // block, cols_el // block
    if rows * block != rows_el or cols * block != cols_el:
        raise ValueError(f"block size {block} does not divide the layer's shape ({rows_el}, {cols_el})")
    total, cover = rows * cols, max(rows, cols)
    count = min(total, max(int(round(density * total)), cover))
    gen = torch.Generator().manual_seed(int(seed))
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    # a permuted diagonal: max(rows, cols) distinct blocks that touch every block-row and block-column
    k = torch.arange(cover)
    mask[torch.randperm(rows, generator=gen)[k % rows], torch.randperm(cols, generator=gen)[k % cols]] = True
    free = (~mask).reshape(-1).nonzero().squeeze(1)
    extra = free[torch.randperm(free.numel(), generator=gen)[:count - cover]]
    mask.view(-1)[extra] = True
    return BlockLayout(mask, block)


def layout_from_state(current: BlockLayout, saved_mask: torch.Tensor, saved_values: torch.Tensor | None,
                      values: nn.Parameter) -> BlockLayout:
    """The layout a loaded state dict holds (`current` when it is the same), and `values` (the
    parameter of its blocks, [..., nnz, b, b]) resized in place when the block count differs."""
    saved_mask = saved_mask.detach().to("cpu", torch.bool)
    block = current.block if saved_values is None else int(saved_values.shape[-1])
    if block == current.block and torch.equal(saved_mask, current.mask):
        return current
    layout = BlockLayout(saved_mask, block)
    shape = (*values.shape[:-3], layout.nnz, block, block)
    if tuple(values.shape) != shape:
        values.data = values.data.new_empty(shape)  # the same Parameter object: optimizers keep it
    return layout


class SparseLinear(BlockSparseLinear):
    """BlockSparseLinear whose layout travels with its state dict (buffer `block_mask`).

    `twice_differentiable = True` computes through the dense masked weight instead of the kernels
    (whose backward is once-differentiable): TRPO's Hessian-vector products differentiate twice."""

    def __init__(self, in_features: int, out_features: int, layout: BlockLayout):
        super().__init__(in_features, out_features, layout=layout)
        self.register_buffer("block_mask", layout.mask.clone())
        self.twice_differentiable = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.twice_differentiable:
            return F.linear(x, self.to_dense(), self.bias)
        return super().forward(x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        mask = state_dict.get(prefix + "block_mask")
        if mask is not None:
            self.layout = layout_from_state(self.layout, mask, state_dict.get(prefix + "weight"), self.weight)
            self.block_mask = self.layout.mask.clone().to(self.block_mask.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

