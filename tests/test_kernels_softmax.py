"""blocksparse_softmax against dense softmax with the masked-out entries at -inf, gradients, dispatch
and errors. The layouts have an empty block-row and an empty block-column in every head."""

from __future__ import annotations

import pytest
import torch

from spintui.kernels import BlockLayout, blocksparse_softmax, softmax, threads

torch.set_num_threads(1)
F64 = torch.float64

# per head: block-row 2 and block-column 1 empty; head 1 also has a block above the diagonal only
# in block-row 0 (so causal leaves that row empty too)
HEADS_MASK = torch.tensor([[[1, 0, 1, 1, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 1, 1], [1, 0, 0, 0, 1]],
                           [[0, 0, 0, 1, 0], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0], [1, 0, 0, 1, 1]]],
                          dtype=torch.bool)
LAYOUTS = {
    "heads16": BlockLayout(HEADS_MASK, 16),
    "plain32": BlockLayout(HEADS_MASK[0], 32),
    "wide16": BlockLayout(torch.tensor([[1, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1]],
                                       dtype=torch.bool), 16),  # non-square
}


@pytest.fixture(autouse=True, params=["per-row", "ranges"])
def cpu_forward_path(request, monkeypatch):
    """The CPU forward's two strategies (test sizes would otherwise always take the ranges)."""
    monkeypatch.setattr(softmax, "ROW_LOOP_MIN_ELEMENTS", 0 if request.param == "per-row" else 1 << 62)


def random_values(layout, *batch, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(*batch, layout.nnz, layout.block, layout.block, generator=gen, dtype=F64)).to(dtype)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layout_name", list(LAYOUTS))
def test_matches_dense_softmax_with_masked_blocks_at_minus_inf(layout_name, causal, backend):
    layout = LAYOUTS[layout_name]
    values = random_values(layout, 2)
    got = blocksparse_softmax(values, layout, scale=0.7, causal=causal, backend=backend)
    want = softmax.softmax_dense(values, layout, 0.7, causal)
    assert got.shape == values.shape and got.dtype == F64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_empty_rows_give_zeros_and_rows_sum_to_one():
    layout = LAYOUTS["heads16"]
    y = layout.to_dense(blocksparse_softmax(random_values(layout), layout, causal=True))  # [H, M, N]
    sums = y.sum(-1)
    empty = sums.abs() < 1e-12
    assert empty[:, 32:48].all()  # block-row 2 is empty in both heads
    assert empty[1, :16].all()  # head 1, block-row 0: only a block above the diagonal
    torch.testing.assert_close(sums[~empty], torch.ones_like(sums[~empty]))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_fp64(causal, backend):
    layout = BlockLayout(HEADS_MASK[:, :3, :3], 16)
    values = random_values(layout, 2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: blocksparse_softmax(v, layout, scale=0.5, causal=causal, backend=backend), (values,),
        fast_mode=True)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_dense_autograd(causal):
    layout = LAYOUTS["heads16"]
    values = random_values(layout, 3, seed=1)
    weight = torch.randn(values.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    for backend in ("cpu", "reference"):
        v = values.clone().requires_grad_()
        (grad,) = torch.autograd.grad((blocksparse_softmax(v, layout, 1.3, causal, backend) * weight).sum(), v)
        v2 = values.clone().requires_grad_()
        (want,) = torch.autograd.grad((softmax.softmax_dense(v2, layout, 1.3, causal) * weight).sum(), v2)
        torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lower_precision_on_cpu_is_computed_in_fp32(dtype):
    layout = LAYOUTS["heads16"]
    values = random_values(layout, 2, dtype=dtype)
    want = softmax.softmax_dense(values, layout, 0.9, True)
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    for backend in ("cpu", "reference"):
        got = blocksparse_softmax(values, layout, 0.9, True, backend)
        assert got.dtype == dtype
        assert float((got.to(F64) - want).abs().max()) < tol


def test_two_threads_match_one(monkeypatch):
    layout = BlockLayout.random((2, 256, 256), 32, 0.4, seed=5)
    values = random_values(layout, 3)
    weight = torch.randn_like(values)
    one = blocksparse_softmax(values, layout, 0.5, True)
    monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        v = values.clone().requires_grad_()
        two = blocksparse_softmax(v, layout, 0.5, True)
        (grad,) = torch.autograd.grad((two * weight).sum(), v)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(two, one, rtol=0, atol=0)
    torch.testing.assert_close(grad, softmax.softmax_backward_reference(one, weight, layout, 0.5))


def test_dispatch_by_device_and_dtype():
    layout = LAYOUTS["plain32"]
    calls = []
    real = softmax._functions
    for dtype in (torch.float64, torch.float32):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(softmax, "_functions", lambda backend: calls.append(backend) or real(backend))
            blocksparse_softmax(random_values(layout, dtype=dtype), layout)
    assert calls == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="backend 'cpu' needs CPU tensors"):
        blocksparse_softmax(random_values(layout).to("meta"), layout, backend="cpu")


@pytest.mark.parametrize("values, layout_name, kwargs, exc, message", [
    (torch.randn(LAYOUTS["plain32"].nnz, 16, 16), "plain32", {}, ValueError,
     "hold 16x16 blocks but the layout's block is 32"),
    (torch.randn(3, 32, 32), "plain32", {}, ValueError, r"hold 3 blocks \(dim -3\) but the layout stores"),
    (torch.randn(32, 32), "plain32", {}, ValueError, "must have shape"),
    ([1.0], "plain32", {}, TypeError, "must be a torch.Tensor"),
    (torch.zeros(LAYOUTS["plain32"].nnz, 32, 32, dtype=torch.int32), "plain32", {}, TypeError, "floating-point"),
    (torch.randn(LAYOUTS["plain32"].nnz, 32, 32), None, {}, TypeError, "layout must be a BlockLayout"),
    (torch.randn(LAYOUTS["plain32"].nnz, 32, 32), "plain32", {"scale": "2"}, TypeError, "scale must be a number"),
])
def test_errors_are_clear_one_liners(values, layout_name, kwargs, exc, message):
    layout = LAYOUTS[layout_name] if layout_name else None
    with pytest.raises(exc, match=message) as info:
        blocksparse_softmax(values, layout, **kwargs)
    assert "\n" not in str(info.value)
