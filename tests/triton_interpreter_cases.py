"""Runs the Triton kernels under TRITON_INTERPRET=1 and prints one JSON result per case.

Started by test_kernels_triton.py in a subprocess, because the interpreter must be chosen before
triton compiles (decorates) the kernels, and the rest of the test process must not inherit it.
Each result is the max error against a float64 dense masked matmul, relative to the largest entry.
"""

from __future__ import annotations

import itertools
import json
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from spintui.kernels import (BlockLayout, attention, blocksparse_attention, blocksparse_matmul,  # noqa: E402
                             blocksparse_softmax, softmax, triton_kernels)

torch.set_num_threads(1)
F64 = torch.float64


def rel_err(got, want):
    got, want = got.detach(), want.detach()
    return float((got.to(F64) - want).abs().max() / want.abs().max())


def dense_problem(layout, mode, trans_a, trans_b, free, batch, dtype, gen):
    blk = layout.block
    heads = (layout.heads_or_one,) if layout.has_heads else ()
    rows, cols = layout.rows * blk, layout.cols * blk

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    def op(x, t):
        return x.mT if t else x

    def stored(x, t):
        return (x.mT.contiguous() if t else x).to(dtype)

    if mode == "sdd":
        A, B = randn(*batch, *heads, rows, free), randn(*batch, *heads, free, cols)
        return stored(A, trans_a), stored(B, trans_b), A, B
    values = randn(*batch, layout.nnz, blk, blk)
    if mode == "dsd":
        S = op(layout.to_dense(values), trans_a)
        B = randn(*batch, *heads, S.shape[-1], free)
        return values.to(dtype), stored(B, trans_b), S, B
    S = op(layout.to_dense(values), trans_b)
    A = randn(*batch, *heads, free, S.shape[-2])
    return stored(A, trans_a), values.to(dtype), A, S


def forward_case(layout, mode, trans_a, trans_b, free=40, batch=(), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a, b, A, B = dense_problem(layout, mode, trans_a, trans_b, free, batch, dtype, gen)
    out = blocksparse_matmul(a, b, layout, mode, trans_a, trans_b, backend="triton")
    want = A @ B
    if mode == "sdd":
        out, want = layout.to_dense(out), want * layout.dense_mask().to(F64)
    assert out.dtype == dtype and out.shape == want.shape, (out.dtype, out.shape, want.shape)
    return rel_err(out, want)


def backward_case(layout, mode, trans_a, trans_b, seed=0):
    """Gradients through the triton backend (its backward runs the other triton products) against the
    float64 reference backend."""
    gen = torch.Generator().manual_seed(seed)
    a, b, _, _ = dense_problem(layout, mode, trans_a, trans_b, 32, (), torch.float32, gen)
    grads = {}
    for backend, dtype in (("triton", torch.float32), ("reference", F64)):
        x, y = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
        out = blocksparse_matmul(x, y, layout, mode, trans_a, trans_b, backend=backend)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64).to(dtype)
        grads[backend] = torch.autograd.grad((out * weight).sum(), (x, y))
    return max(rel_err(g, w) for g, w in zip(grads["triton"], grads["reference"]))


def bias_case(layout, mode, seed=0):
    """dsd / dds with a bias (added after the triton product) against the float64 reference."""
    gen = torch.Generator().manual_seed(seed)
    a, b, A, B = dense_problem(layout, mode, False, False, 24, (), torch.float32, gen)
    want = A @ B
    bias = torch.randn(want.shape[-1], generator=gen, dtype=F64)
    out = blocksparse_matmul(a, b, layout, mode, backend="triton", bias=bias.float())
    return rel_err(out, want + bias)


def softmax_forward_case(layout, causal, batch=(), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    values = 3 * torch.randn(*batch, layout.nnz, layout.block, layout.block, generator=gen, dtype=F64)
    out = blocksparse_softmax(values.to(dtype), layout, scale=0.8, causal=causal, backend="triton")
    assert out.dtype == dtype and out.shape == values.shape
    return rel_err(out, softmax.softmax_dense(values.to(dtype), layout, 0.8, causal))


def softmax_backward_case(layout, causal, seed=0):
    """Gradient through the triton softmax against the float64 reference backend."""
    gen = torch.Generator().manual_seed(seed)
    values = 3 * torch.randn(2, layout.nnz, layout.block, layout.block, generator=gen, dtype=F64)
    weight = torch.randn(values.shape, generator=gen, dtype=F64)
    grads = []
    for backend, dtype in (("triton", torch.float32), ("reference", F64)):
        v = values.to(dtype).requires_grad_()
        out = blocksparse_softmax(v, layout, scale=0.8, causal=causal, backend=backend)
        grads.append(torch.autograd.grad((out * weight.to(dtype)).sum(), v)[0])
    return rel_err(*grads)


def attention_case(layout, causal, backward=False, seed=0):
    """Attention through the triton backend (SDD, softmax, DSD kernels) against fp64 SDPA with the mask."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, layout.heads_or_one, layout.shape[-1], 16, generator=gen, dtype=F64) for _ in range(3))
    weight = torch.randn(q.shape, generator=gen, dtype=F64)
    ours = [t.float().requires_grad_() for t in (q, k, v)]
    dense = [t.clone().requires_grad_() for t in (q, k, v)]
    out = blocksparse_attention(*ours, layout, causal=causal, backend="triton")
    want = attention.attention_dense(*dense, layout, causal=causal)
    if not backward:
        return rel_err(out, want)
    grads = torch.autograd.grad((out * weight.float()).sum(), ours)
    wants = torch.autograd.grad((want * weight).sum(), dense)
    return max(rel_err(g, w) for g, w in zip(grads, wants))


def softmax_cases() -> dict:
    """Layouts with an empty block-row and an empty block-column in every head; head 1's block-row 0
    holds only a block above the diagonal, so causal empties it too."""
    heads = BlockLayout(torch.tensor([[[1, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 1]],
                                      [[0, 0, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1]]], dtype=torch.bool), 16)
    wide = BlockLayout(torch.tensor([[1, 0, 0, 1, 1], [0, 0, 0, 0, 0], [0, 1, 0, 1, 0]], dtype=torch.bool), 32)
    results = {}
    for causal in (False, True):
        c = int(causal)
        results[f"softmax-fwd-heads16-batch-causal{c}"] = softmax_forward_case(heads, causal, batch=(2,))
        results[f"softmax-fwd-wide32-causal{c}"] = softmax_forward_case(wide, causal)
        results[f"softmax-fwd-fp16-causal{c}"] = softmax_forward_case(heads, causal, dtype=torch.float16)
        results[f"softmax-bwd-heads16-causal{c}"] = softmax_backward_case(heads, causal)
        results[f"attention-fwd-heads16-causal{c}"] = attention_case(heads, causal)
    results["attention-bwd-heads16-causal1"] = attention_case(heads, True, backward=True)
    return results


def main() -> None:
    odd = BlockLayout(torch.tensor([[1, 0, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 1], [0, 1, 0, 1, 0]],
                                   dtype=torch.bool), 16)  # empty block-row 1 and block-column 2
    heads = BlockLayout.random((2, 64, 96), 32, 0.5, seed=3)
    big_block = BlockLayout.random((128, 128), 64, 0.5, seed=1)
    results = {}
    for mode, ta, tb in itertools.product(("sdd", "dsd", "dds"), (False, True), (False, True)):
        results[f"fwd-odd16-{mode}-ta{int(ta)}-tb{int(tb)}"] = forward_case(odd, mode, ta, tb, free=40)
    for mode in ("sdd", "dsd", "dds"):
        results[f"fwd-block64-{mode}"] = forward_case(big_block, mode, False, False, free=64)
        results[f"fwd-fp16-{mode}"] = forward_case(odd, mode, False, True, dtype=torch.float16)
        results[f"bwd-{mode}-plain"] = backward_case(odd, mode, False, False)
        results[f"bwd-{mode}-transposed"] = backward_case(odd, mode, True, True)
    # heads and a batch dim with small tiles: several N / M tiles and K steps per program, each
    # with a masked remainder (free=40)
    triton_kernels.OVERRIDES.update(dsd={"BLOCK_N": 16}, dds={"BLOCK_M": 16}, sdd={"BLOCK_K": 16})
    for mode, ta, tb in itertools.product(("sdd", "dsd", "dds"), (False, True), (False, True)):
        results[f"fwd-heads32-batch-{mode}-ta{int(ta)}-tb{int(tb)}"] = forward_case(heads, mode, ta, tb, free=40,
                                                                                  batch=(2,))
    # the persistent variant: 8 programs walk every tile
    triton_kernels.OVERRIDES.update(dsd={"BLOCK_N": 16, "PERSISTENT": True}, dds={"BLOCK_M": 16, "PERSISTENT": True})
    for mode, ta, tb in itertools.product(("dsd", "dds"), (False, True), (False, True)):
        results[f"fwd-persistent-{mode}-ta{int(ta)}-tb{int(tb)}"] = forward_case(heads, mode, ta, tb, free=40,
                                                                                 batch=(2,))
    results["bwd-persistent-dds"] = backward_case(odd, "dds", True, False)  # its dA runs DSD
    triton_kernels.OVERRIDES.clear()
    for mode in ("dsd", "dds"):
        results[f"fwd-bias-{mode}"] = bias_case(odd, mode)
    results.update(softmax_cases())
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
