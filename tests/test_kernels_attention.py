"""blocksparse_attention and BlockSparseSelfAttention against scaled_dot_product_attention with the
layout expanded to a boolean mask, gradients, lower precisions on the CPU, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spintui.kernels import BlockLayout, BlockSparseSelfAttention, attention, blocksparse_attention, cpu

torch.set_num_threads(1)
F64 = torch.float64

# per head: block-row 1 and block-column 2 empty (head 1's block-row 0 holds a block above the
# diagonal only, so causal leaves it empty too)
HEADS = BlockLayout(torch.tensor([[[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]],
                                  [[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1], [1, 1, 0, 1]]], dtype=torch.bool), 16)
LAYOUTS = {
    "heads": HEADS,
    "shared": BlockLayout(HEADS.mask[0], 16),  # one layout for every head: heads are a batch dim
    "strided": attention.pattern_layout("strided", 128, 16, stride=3),
    "fixed": attention.pattern_layout("fixed", 128, 16, stride=4, summary=1),
}


@pytest.fixture(autouse=True, params=["per-block", "gather"])
def cpu_path(request, monkeypatch):
    monkeypatch.setattr(cpu, "LOOP_MIN_BLOCK_WORK", 0 if request.param == "per-block" else 1 << 62)


def qkv(layout, batch=(2,), d=8, dv=None, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    heads = (layout.heads_or_one,) if layout.has_heads else (3,)
    seq = layout.shape[-1]
    return tuple(torch.randn(*batch, *heads, seq, dim, generator=gen, dtype=F64).to(dtype)
                 for dim in (d, d, dv or d))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layout_name", list(LAYOUTS))
def test_matches_sdpa_with_the_expanded_mask_in_fp64(layout_name, causal, backend):
    layout = LAYOUTS[layout_name]
    q, k, v = qkv(layout, dv=5)
    got = blocksparse_attention(q, k, v, layout, causal=causal, backend=backend)
    mask = attention.dense_mask(layout, causal)
    want = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert got.shape == want.shape and got.dtype == F64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_explicit_scale_and_empty_rows():
    layout = LAYOUTS["heads"]
    q, k, v = qkv(layout)
    got = blocksparse_attention(q, k, v, layout, scale=0.3, causal=True)
    torch.testing.assert_close(got, attention.attention_dense(q, k, v, layout, 0.3, causal=True))
    assert got[:, :, 16:32].abs().max() == 0  # block-row 1 is empty in both heads
    assert got[:, 1, :16].abs().max() == 0  # head 1, block-row 0: causal leaves nothing


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_dense_autograd(causal):
    layout = LAYOUTS["heads"]
    inputs = qkv(layout, seed=1)
    weight = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    ours = [t.clone().requires_grad_() for t in inputs]
    grads = torch.autograd.grad((blocksparse_attention(*ours, layout, causal=causal) * weight).sum(), ours)
    dense = [t.clone().requires_grad_() for t in inputs]
    want = torch.autograd.grad((attention.attention_dense(*dense, layout, causal=causal) * weight).sum(), dense)
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_gradcheck_fp64():
    layout = BlockLayout(HEADS.mask[:, :3, :3], 16)
    q, k, v = (t.requires_grad_() for t in qkv(layout, batch=(), d=4))
    assert torch.autograd.gradcheck(lambda q, k, v: blocksparse_attention(q, k, v, layout, causal=True), (q, k, v),
                                    fast_mode=True)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_lower_precisions_on_cpu(dtype, tol):
    """fp16 and bf16 run on the CPU too (products in the input dtype, softmax in fp32)."""
    layout = LAYOUTS["strided"]
    q, k, v = qkv(layout, d=16)
    want = attention.attention_dense(q, k, v, layout, causal=True)
    got = blocksparse_attention(q.to(dtype), k.to(dtype), v.to(dtype), layout, causal=True)
    assert got.dtype == dtype
    assert float((got.to(F64) - want).abs().max() / want.abs().max()) < tol


def dense_twin_output(module: BlockSparseSelfAttention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = module.split_heads(x)
    mask = attention.dense_mask(module.layout, module.causal)
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return module.out(out.movedim(-3, -2).flatten(-2))


@pytest.mark.parametrize("pattern, causal", [("strided", True), ("fixed", True), ("strided", False)])
def test_self_attention_module_matches_dense_masked_attention(pattern, causal):
    torch.manual_seed(0)
    module = BlockSparseSelfAttention(24, 3, seq_len=128, pattern=pattern, block=16, stride=3, causal=causal,
                                      dtype=F64)
    x = torch.randn(2, 128, 24, dtype=F64, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, dense_twin_output(module, x))
    y.square().sum().backward()
    assert x.grad is not None and module.qkv.weight.grad is not None


def test_self_attention_with_a_layout_per_head():
    module = BlockSparseSelfAttention(16, 2, layout=HEADS, causal=False, dtype=F64)
    x = torch.randn(3, 64, 16, dtype=F64)
    torch.testing.assert_close(module(x), dense_twin_output(module, x))
    assert "num_heads=2" in repr(module) and "seq_len=64" in repr(module)


def test_pattern_layouts_are_the_sparse_transformers():
    strided = attention.pattern_layout("strided", 8 * 16, 16, stride=3)
    r, c = torch.arange(8)[:, None], torch.arange(8)[None, :]
    assert torch.equal(strided.mask, (((r - c) < 3) | ((r - c) % 3 == 0)) & (c <= r))
    fixed = attention.pattern_layout("fixed", 8 * 16, 16, stride=4, summary=1, causal=False)
    assert torch.equal(fixed.mask, (r // 4 == c // 4) | (c % 4 == 3))
    assert attention.pattern_layout("strided", 2048, 64).density < 0.5  # default stride ~ sqrt(32 blocks)


@pytest.mark.parametrize("make, exc, message", [
    (lambda: (qkv(BlockLayout.random((64, 64), 16, 0.5)), BlockLayout.random((64, 96), 16, 0.5)),
     ValueError, "attention needs a square layout"),
    (lambda: ((torch.randn(2, 60, 8),) * 3, BlockLayout.random((64, 64), 16, 0.5)), ValueError,
     "sequence length 60 .* is not divisible by the layout's block 16"),
    (lambda: ((torch.randn(2, 48, 8),) * 3, BlockLayout.random((64, 64), 16, 0.5)), ValueError,
     r"sequence length 48 \(q's dim -2\) does not match the layout's 64"),
    (lambda: ((torch.randn(3, 64, 8),) * 3, HEADS), ValueError, r"q has 3 heads \(dim -3\) but the layout has 2"),
    (lambda: ((torch.randn(2, 64, 8), torch.randn(2, 64, 4), torch.randn(2, 64, 8)), HEADS.transposed()),
     ValueError, "same head dim"),
    (lambda: ((torch.randn(2, 64, 8), torch.randn(2, 64, 8, dtype=F64), torch.randn(2, 64, 8)), HEADS), TypeError,
     "one floating dtype"),
    (lambda: ((torch.randn(64, 8),) * 3, HEADS), ValueError, r"must be \[\*batch, heads, T, d\]"),
    (lambda: ((torch.randn(64, 8),) * 3, "layout"), TypeError, "layout must be a BlockLayout"),
])
def test_bad_input_raises_one_line_naming_the_mismatch(make, exc, message):
    (q, k, v), layout = make()
    with pytest.raises(exc, match=message) as info:
        blocksparse_attention(q, k, v, layout)
    assert "\n" not in str(info.value)


def test_module_refuses_bad_configuration():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        BlockSparseSelfAttention(10, 3, seq_len=64, block=16)
    with pytest.raises(ValueError, match="needs seq_len"):
        BlockSparseSelfAttention(12, 3)
    with pytest.raises(ValueError, match="layout has 2 heads but num_heads is 3"):
        BlockSparseSelfAttention(12, 3, layout=HEADS)
    with pytest.raises(ValueError, match="pattern must be one of strided, fixed"):
        BlockSparseSelfAttention(12, 3, seq_len=64, block=16, pattern="local")
    module = BlockSparseSelfAttention(12, 3, seq_len=64, block=16)
    with pytest.raises(ValueError, match="sequence length 48 .* does not match the layout's 64"):
        module(torch.randn(2, 48, 12))
    assert math.isclose(module.layout.density, attention.pattern_layout("strided", 64, 16).density)
