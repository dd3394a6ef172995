"""BlockSparseLinear: a drop-in for nn.Linear whose weight has a block-sparse pattern."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layout import BlockLayout
from .matmul import blocksparse_matmul


class BlockSparseLinear(nn.Module):
    """y = x @ W^T + bias with W ([out_features, in_features]) stored as its blocks only.

    Give either a `layout` of shape (out_features, in_features) or a `density` (a seeded random
    layout with that fraction of `block` x `block` tiles). The weight parameter has shape
    ``[nnz, block, block]`` in the layout's order; `to_dense()` returns W.

    Initialisation follows nn.Linear (kaiming-uniform, bound 1/sqrt(fan_in)) with the fan-in each
    output actually sees, in_features * density, so activations keep nn.Linear's scale.
    """

    def __init__(self, in_features: int, out_features: int, layout: BlockLayout | None = None,
                 density: float | None = None, block: int = 32, bias: bool = True, seed: int = 0,
                 device=None, dtype=None):
        super().__init__()
        if (layout is None) == (density is None):
            raise ValueError("BlockSparseLinear needs exactly one of layout= or density=")
        if layout is None:
            layout = BlockLayout.random((out_features, in_features), block, density, seed=seed)
        if not isinstance(layout, BlockLayout):
            raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
        if layout.has_heads or layout.shape != (out_features, in_features):
            raise ValueError(f"layout shape {layout.shape} must be (out_features, in_features) = "
                             f"({out_features}, {in_features})")
        self.in_features, self.out_features, self.layout = in_features, out_features, layout
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(layout.nnz, layout.block, layout.block, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> float:
        return max(1.0, self.in_features * self.layout.density)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"input's last dim must be in_features={self.in_features}, got shape {tuple(x.shape)}")
        # tokens of every batch dim become the free M dimension of one DDS product
        flat = x.reshape(-1, self.in_features)
        # the bias goes into the product (the CPU path starts each output line from it: no pass of its own)
        y = blocksparse_matmul(flat, self.weight, self.layout, mode="dds", trans_b=True, bias=self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def to_dense(self) -> torch.Tensor:
        """The weight as a dense [out_features, in_features] tensor (differentiable)."""
        return self.layout.to_dense(self.weight)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, block={self.layout.block}, "
                f"density={self.layout.density:.3f}, bias={self.bias is not None}")
