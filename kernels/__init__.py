"""spintui.kernels: block-sparse matrix products, softmax and attention for PyTorch.

    from spintui.kernels import BlockLayout, blocksparse_matmul, blocksparse_softmax, blocksparse_attention

    layout = BlockLayout.random((2048, 2048), block=64, density=0.1, seed=0)
    values = torch.randn(layout.nnz, 64, 64)                     # the sparse matrix's blocks
    out = blocksparse_matmul(values, dense, layout, mode="dsd")   # sparse @ dense
    probs = blocksparse_softmax(scores, layout, scale, causal=True)  # row softmax of block values
    out = blocksparse_attention(q, k, v, layout, causal=True)     # SDD -> softmax -> DSD

Importing this package does not import triton; the Triton kernels load on first CUDA use.
"""

from .attention import BlockSparseSelfAttention, blocksparse_attention
from .layout import BLOCK_SIZES, BlockLayout
from .linear import BlockSparseLinear
from .matmul import BACKENDS, MODES, blocksparse_matmul, select_backend
from .softmax import blocksparse_softmax

__all__ = ["BLOCK_SIZES", "BACKENDS", "MODES", "BlockLayout", "BlockSparseLinear", "BlockSparseSelfAttention",
           "blocksparse_attention", "blocksparse_matmul", "blocksparse_softmax", "select_backend"]
