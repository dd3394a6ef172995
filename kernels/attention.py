"""Block-sparse attention (the Sparse Transformer's): a function and a self-attention module.

    out = blocksparse_attention(q, k, v, layout, scale=None, causal=False)

is SDD(q, k^T) at the layout's blocks -> blocksparse_softmax(scale, causal) -> DSD(p, v), i.e.
dense attention in which a query block attends only to the key blocks its layout row stores:

    softmax(scale * q @ k^T with every entry outside the layout (and above the diagonal if causal)
            at -inf) @ v,      scale = 1 / sqrt(head_dim) by default

which is ``torch.nn.functional.scaled_dot_product_attention`` with the expanded boolean mask
(`attention_dense`). A query row with no key left gives zeros, as SDPA does.

Shapes: q, k, v ``[*batch, (heads,) T, d]`` (v's d may differ), the layout square,
``[T/b, T/b]`` (shared by every head: heads are then a batch dim) or ``[heads, T/b, T/b]``. Every
backend of the products and the softmax is used as they dispatch (device and dtype), so autograd,
the CPU threads and the Triton kernels come from them.

`BlockSparseSelfAttention` is multi-head self-attention with such a layout: the Sparse
Transformer's "strided" or "fixed" pattern (BlockLayout.strided / .fixed, in blocks), or a layout
given.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layout import BlockLayout
from .matmul import blocksparse_matmul
from .softmax import blocksparse_softmax, dense_mask

PATTERNS = ("strided", "fixed")


def check_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BlockLayout) -> None:
    """TypeError / ValueError (one line, naming the mismatch) unless q, k, v fit `layout`."""
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    if layout.rows != layout.cols:
        raise ValueError(f"attention needs a square layout (query blocks x key blocks), got "
                         f"{layout.rows}x{layout.cols} blocks of {layout.block}")
    mat_dims = 3 if layout.has_heads else 2
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < mat_dims:
            raise ValueError(f"{name} must be [*batch, {'heads, ' if layout.has_heads else ''}T, d] for this layout, "
                             f"got shape {tuple(t.shape)}")
    seq, blk = layout.shape[-1], layout.block
    for name, t in (("q", q), ("k", k), ("v", v)):
        length = t.shape[-2]
        if length % blk:
            raise ValueError(f"sequence length {length} ({name}'s dim -2) is not divisible by the layout's block {blk}")
        if length != seq:
            raise ValueError(f"sequence length {length} ({name}'s dim -2) does not match the layout's {seq} "
                             f"({layout.rows} blocks of {blk})")
        if layout.has_heads and t.shape[-3] != layout.heads_or_one:
            raise ValueError(f"{name} has {t.shape[-3]} heads (dim -3) but the layout has {layout.heads_or_one}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head dim (dim -1), got {q.shape[-1]} and {k.shape[-1]}")
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise TypeError(f"q, k and v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")


def blocksparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BlockLayout,
                          scale: float | None = None, causal: bool = False, backend: str | None = None) -> torch.Tensor:
    """softmax(scale * q @ k^T at the layout's blocks) @ v; see the module docstring. -> [*batch, (heads,) T, d_v]"""
    check_attention(q, k, v, layout)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = blocksparse_matmul(q, k, layout, "sdd", trans_b=True, backend=backend)
    probs = blocksparse_softmax(scores, layout, scale, causal, backend)
    return blocksparse_matmul(probs, v, layout, "dsd", backend=backend)


def attention_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BlockLayout,
                    scale: float | None = None, causal: bool = False) -> torch.Tensor:
    """The definition, for checks and as the dense peer: SDPA with the layout expanded to a boolean mask."""
    mask = dense_mask(layout, causal).to(q.device)
    return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def pattern_layout(pattern: str, seq_len: int, block: int, stride: int | None = None, summary: int = 1,
                   causal: bool = True) -> BlockLayout:
    """The Sparse Transformer's layout for `seq_len` tokens: "strided" (the previous `stride` blocks
    and every stride-th block before) or "fixed" (the own chunk of `stride` blocks and the last
    `summary` blocks of every chunk); `stride` in blocks, by default about sqrt(seq_len / block)."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    if stride is None:
        stride = max(1, round(math.sqrt(seq_len // block))) if seq_len >= block else 1
    if pattern == "strided":
        return BlockLayout.strided((seq_len, seq_len), block, stride, causal=causal)
    return BlockLayout.fixed((seq_len, seq_len), block, stride, summary, causal=causal)


class BlockSparseSelfAttention(nn.Module):
    """Multi-head self-attention over a block-sparse layout: x [*batch, T, embed_dim] -> the same shape.

    Give `seq_len` and a `pattern` ("strided" or "fixed", with `block`, `stride` and `summary` in
    blocks; see `pattern_layout`), or a square `layout` ([T/b, T/b] for every head, or
    [num_heads, T/b, T/b]). `causal` also masks inside the diagonal blocks (and builds the pattern
    without blocks above the diagonal). Projections are nn.Linear (q, k, v in one, then out).
    """

    def __init__(self, embed_dim: int, num_heads: int, seq_len: int | None = None, pattern: str = "strided",
                 block: int = 64, stride: int | None = None, summary: int = 1, causal: bool = True,
                 layout: BlockLayout | None = None, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})")
        if layout is None:
            if seq_len is None:
                raise ValueError("BlockSparseSelfAttention needs seq_len (with a pattern) or a layout")
            layout = pattern_layout(pattern, seq_len, block, stride, summary, causal)
        if not isinstance(layout, BlockLayout):
            raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
        if layout.rows != layout.cols:
            raise ValueError(f"attention needs a square layout, got {layout.rows}x{layout.cols} blocks")
        if layout.has_heads and layout.heads_or_one != num_heads:
            raise ValueError(f"layout has {layout.heads_or_one} heads but num_heads is {num_heads}")
        if seq_len is not None and seq_len != layout.shape[-1]:
            raise ValueError(f"seq_len {seq_len} does not match the layout's {layout.shape[-1]}")
        self.embed_dim, self.num_heads, self.causal, self.layout = embed_dim, num_heads, causal, layout
        self.seq_len = layout.shape[-1]
        factory = dict(device=device, dtype=dtype)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias, **factory)
        self.out = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v [*batch, heads, T, head_dim] (views) from x [*batch, T, embed_dim]."""
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.embed_dim // self.num_heads))
        return qkv.movedim(-4, -2).unbind(-4)  # [*batch, T, 3, H, D] -> 3 x [*batch, H, T, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"input must be [*batch, T, {self.embed_dim}], got shape {tuple(x.shape)}")
        if x.shape[-2] != self.seq_len:
            raise ValueError(f"sequence length {x.shape[-2]} (dim -2) does not match the layout's {self.seq_len}")
        q, k, v = self.split_heads(x)
        out = blocksparse_attention(q, k, v, self.layout, causal=self.causal)
        return self.out(out.movedim(-3, -2).flatten(-2))

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, seq_len={self.seq_len}, "
                f"block={self.layout.block}, density={self.layout.density:.3f}, causal={self.causal}")
