"""The CPU path on several threads (kernels/threads.py): the same results as the reference, the
split of work, and what the worker threads do to torch's thread settings."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from spintui.kernels import BlockLayout, BlockSparseLinear, blocksparse_matmul, cpu, threads

F64 = torch.float64


@pytest.fixture
def two_threads(monkeypatch):
    """Two torch threads, and every product large enough for the thread split."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(cpu, "LOOP_MIN_BLOCK_WORK", 0)
    yield
    torch.set_num_threads(previous)


def test_split_gives_contiguous_ranges_of_about_equal_cost():
    assert threads.split([1, 1, 1, 1], 2) == [(0, 2), (2, 4)]
    assert threads.split([5, 1, 1, 1, 1, 1], 2) == [(0, 1), (1, 6)]
    assert threads.split([1, 1], 4) == [(0, 1), (1, 2)]
    assert threads.split([0, 0, 0], 2) == [(0, 1), (1, 3)]
    for costs in ([3, 1, 4, 1, 5, 9, 2, 6], [1] * 7, [0, 9, 0, 0]):
        for parts in (1, 2, 3):
            ranges = threads.split(costs, parts)
            assert ranges[0][0] == 0 and ranges[-1][1] == len(costs) and len(ranges) <= parts
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])) and all(s < e for s, e in ranges)


def _operands(layout, mode, trans_a, trans_b, free, gen):
    heads = (layout.heads_or_one,) if layout.has_heads else ()
    rows, cols = layout.shape[-2:]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    def stored(x, t):
        return x.mT.contiguous() if t else x

    if mode == "sdd":
        return stored(randn(2, *heads, rows, free), trans_a), stored(randn(2, *heads, free, cols), trans_b)
    values = randn(2, layout.nnz, layout.block, layout.block)
    if mode == "dsd":
        k = cols if not trans_a else rows
        return values, stored(randn(2, *heads, k, free), trans_b)
    k = rows if not trans_b else cols
    return stored(randn(2, *heads, free, k), trans_a), values


@pytest.mark.parametrize("split", ["free", "lines"])
@pytest.mark.parametrize("layout", [BlockLayout.random((2, 64, 96), 16, 0.5, seed=1),
                                    BlockLayout(torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=torch.bool), 16)],
                         ids=["heads", "empty-row"])
def test_two_threads_match_the_reference(two_threads, monkeypatch, layout, split):
    """Both ways of splitting DSD / DDS (the free dim, or the lines), with transposed operands (whose
    strips get packed) and a bias."""
    monkeypatch.setattr(cpu, "FREE_SPLIT_MIN", 8 if split == "free" else 1 << 30)
    gen = torch.Generator().manual_seed(0)
    for mode, ta, tb in itertools.product(("sdd", "dsd", "dds"), (False, True), (False, True)):
        a, b = _operands(layout, mode, ta, tb, 40, gen)
        n = None
        if mode != "sdd":
            n = b.shape[-1 if not tb else -2] if mode == "dsd" else layout.shape[-1 if not tb else -2]
        for bias in ([None] if mode == "sdd" else [None, torch.randn(n, generator=gen, dtype=F64)]):
            got = blocksparse_matmul(a, b, layout, mode, ta, tb, backend="cpu", bias=bias)
            want = blocksparse_matmul(a, b, layout, mode, ta, tb, backend="reference", bias=bias)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"{mode} ta={ta} tb={tb}")


def test_gradients_on_two_threads_with_inputs_that_require_grad(two_threads):
    """Workers take the caller's grad mode: inside the autograd Function it is off, so out= GEMMs accept
    a weight that requires grad."""
    layer = BlockSparseLinear(128, 96, density=0.5, block=32, seed=2).double()
    x = torch.randn(64, 128, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: blocksparse_matmul(x, w, layer.layout, "dds", trans_b=True, bias=b),
        (x, layer.weight, layer.bias), fast_mode=True)
    y = layer(x)
    grads = torch.autograd.grad(y.square().sum(), (x, layer.weight, layer.bias))
    dense = torch.nn.functional.linear(x, layer.to_dense(), layer.bias)
    want = torch.autograd.grad(dense.square().sum(), (x, layer.weight, layer.bias))
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), dense.detach())


def test_workers_run_one_torch_thread_and_leave_the_callers_count(two_threads):
    pool = threads._pool(2)
    barrier = threading.Barrier(2)
    counts = list(pool.map(lambda _: (torch.get_num_threads(), barrier.wait())[0], range(2)))
    assert counts == [1, 1]
    assert torch.get_num_threads() == 2
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [2]  # a thread started afterwards gets the caller's count, not the workers' 1


def test_an_error_in_a_worker_reaches_the_caller(two_threads):
    def run(first, last):
        if first > 0:
            raise RuntimeError("boom in a worker")

    with pytest.raises(RuntimeError, match="boom in a worker"):
        threads.run_items([1, 1, 1, 1], run, work=1e9)
