"""blocksparse_matmul against dense masked matmul in float64, gradients, dispatch and errors."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

from spintui.kernels import BlockLayout, blocksparse_matmul, cpu, select_backend

torch.set_num_threads(1)
F64 = torch.float64


@pytest.fixture(autouse=True)
def per_block_cpu_path(monkeypatch):
    """Test sizes are small enough that the CPU backend would hand them to the gathering reference
    path; force its per-block loop so that "cpu" and "reference" are two independent code paths."""
    monkeypatch.setattr(cpu, "LOOP_MIN_BLOCK_WORK", 0)


def op(x, trans):
    return x.mT if trans else x


def stored(x, trans):
    """The tensor a caller passes so that op(stored, trans) == x (a fresh contiguous tensor)."""
    return x.mT.contiguous() if trans else x


def problem(layout, mode, trans_a, trans_b, free, batch=(), dtype=F64, gen=None):
    """(a, b, expected) with expected computed by dense torch.matmul on the masked dense matrix."""
    blk = layout.block
    heads = (layout.heads_or_one,) if layout.has_heads else ()
    rows, cols = layout.rows * blk, layout.cols * blk

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    if mode == "sdd":
        A, B = randn(*batch, *heads, rows, free), randn(*batch, *heads, free, cols)
        return stored(A, trans_a), stored(B, trans_b), (A @ B) * layout.dense_mask().to(dtype)
    values = randn(*batch, layout.nnz, blk, blk)
    if mode == "dsd":
        S = op(layout.to_dense(values), trans_a)
        B = randn(*batch, *heads, S.shape[-1], free)
        return values, stored(B, trans_b), S @ B
    S = op(layout.to_dense(values), trans_b)
    A = randn(*batch, *heads, free, S.shape[-2])
    return stored(A, trans_a), values, A @ S


def run(layout, mode, a, b, trans_a, trans_b, backend):
    out = blocksparse_matmul(a, b, layout, mode, trans_a, trans_b, backend=backend)
    return layout.to_dense(out) if mode == "sdd" else out


MODES_TRANS = list(itertools.product(("sdd", "dsd", "dds"), (False, True), (False, True)))
LAYOUTS = {
    # non-square, with an empty block-row (1) and an empty block-column (2)
    "odd": BlockLayout(torch.tensor([[1, 0, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 1], [0, 1, 0, 1, 0]],
                                    dtype=torch.bool), 16),
    "random32": BlockLayout.random((96, 64), 32, 0.5, seed=4),
    "heads": BlockLayout.random((2, 48, 80), 16, 0.4, seed=7),
}


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("layout_name", list(LAYOUTS))
@pytest.mark.parametrize("mode, trans_a, trans_b", MODES_TRANS)
def test_matches_dense_masked_matmul(mode, trans_a, trans_b, layout_name, backend):
    layout = LAYOUTS[layout_name]
    gen = torch.Generator().manual_seed(MODES_TRANS.index((mode, trans_a, trans_b)) + 100 * list(LAYOUTS).index(
        layout_name))
    for free in (48, 23):  # a multiple of the block and an odd free dimension
        a, b, expected = problem(layout, mode, trans_a, trans_b, free, gen=gen)
        got = run(layout, mode, a, b, trans_a, trans_b, backend)
        assert got.shape == expected.shape and got.dtype == F64
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["sdd", "dsd", "dds"])
def test_batch_dims_and_broadcasting(mode):
    layout = LAYOUTS["heads"]
    gen = torch.Generator().manual_seed(11)
    a, b, expected = problem(layout, mode, False, True, 32, batch=(3,), gen=gen)
    torch.testing.assert_close(run(layout, mode, a, b, False, True, "cpu"), expected)
    # a sparse operand without batch dims is shared across the dense operand's batch
    if mode != "sdd":
        shared = (a[0] if mode == "dsd" else b[0])
        a2, b2 = (shared, b) if mode == "dsd" else (a, shared)
        S = layout.to_dense(shared)  # trans_b=True: op(b) for dsd, op(S) for dds
        expected2 = S @ b2.mT if mode == "dsd" else a2 @ S.mT
        got = blocksparse_matmul(a2, b2, layout, mode, False, True)
        assert got.shape == (3, *expected2.shape[-3:])
        torch.testing.assert_close(got, expected2.expand_as(got))


cpu_reference = cpu.dsd_reference


def test_cpu_backend_picks_loop_or_gather_by_block_work(monkeypatch):
    monkeypatch.setattr(cpu, "LOOP_MIN_BLOCK_WORK", 16 * 16 * 64)
    layout = LAYOUTS["odd"]
    calls = []
    monkeypatch.setattr(cpu, "dsd_reference", lambda *args: calls.append("gather") or cpu_reference(*args))
    for free in (63, 64):
        values, b, expected = problem(layout, "dsd", False, False, free)
        torch.testing.assert_close(blocksparse_matmul(values, b, layout, "dsd", backend="cpu"), expected)
    assert calls == ["gather"]  # 63 columns: gathered; 64: one GEMM per block


def test_lower_precision_dtypes_on_cpu():
    layout = LAYOUTS["random32"]
    for dtype in (torch.float32, torch.bfloat16):
        gen = torch.Generator().manual_seed(3)
        values, b, _ = problem(layout, "dsd", False, False, 64, dtype=dtype, gen=gen)
        got = blocksparse_matmul(values, b, layout, "dsd")
        expected = layout.to_dense(values).to(F64) @ b.to(F64)
        assert got.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        assert float((got.to(F64) - expected).abs().max() / expected.abs().max()) < tol


GRAD_LAYOUT = BlockLayout(torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool), 16)  # 32 x 48, empty row


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("mode, trans_a, trans_b", MODES_TRANS)
def test_gradcheck_fp64(mode, trans_a, trans_b, backend):
    gen = torch.Generator().manual_seed(5)
    a, b, _ = problem(GRAD_LAYOUT, mode, trans_a, trans_b, 16, gen=gen)
    a, b = a.requires_grad_(), b.requires_grad_()

    def fn(x, y):
        return blocksparse_matmul(x, y, GRAD_LAYOUT, mode, trans_a, trans_b, backend=backend)

    assert torch.autograd.gradcheck(fn, (a, b), fast_mode=True)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("mode, trans_a, trans_b", [m for m in MODES_TRANS if m[0] != "sdd"])
def test_bias_is_added_to_every_row_with_its_gradient(mode, trans_a, trans_b, backend):
    gen = torch.Generator().manual_seed(6)
    a, b, expected = problem(GRAD_LAYOUT, mode, trans_a, trans_b, 16, gen=gen)
    bias = torch.randn(expected.shape[-1], generator=gen, dtype=F64)
    got = blocksparse_matmul(a, b, GRAD_LAYOUT, mode, trans_a, trans_b, backend=backend, bias=bias)
    torch.testing.assert_close(got, expected + bias, rtol=1e-12, atol=1e-12)

    def fn(x, y, z):
        return blocksparse_matmul(x, y, GRAD_LAYOUT, mode, trans_a, trans_b, backend=backend, bias=z)

    assert torch.autograd.gradcheck(fn, (a.requires_grad_(), b.requires_grad_(), bias.requires_grad_()),
                                    fast_mode=True)


@pytest.mark.parametrize("mode", ["sdd", "dsd", "dds"])
def test_gradients_match_dense_autograd(mode):
    """Full gradients (not only directional ones) against autograd through a dense masked matmul."""
    layout = LAYOUTS["odd"]
    gen = torch.Generator().manual_seed(9)
    for trans_a, trans_b in itertools.product((False, True), repeat=2):
        a, b, _ = problem(layout, mode, trans_a, trans_b, 24, gen=gen)
        a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
        out = blocksparse_matmul(a, b, layout, mode, trans_a, trans_b)
        weight = torch.randn(out.shape, generator=gen, dtype=F64)
        grads = torch.autograd.grad((out * weight).sum(), (a, b))

        a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        da = op(layout.to_dense(a2) if mode == "dsd" else a2, trans_a)
        db = op(layout.to_dense(b2) if mode == "dds" else b2, trans_b)
        dense_out = da @ db
        if mode == "sdd":
            dense_out = layout.values_from_dense(dense_out)
        expected = torch.autograd.grad((dense_out * weight).sum(), (a2, b2))
        for got_grad, want in zip(grads, expected):
            torch.testing.assert_close(got_grad, want, rtol=1e-12, atol=1e-12)


def test_only_requested_gradients_are_computed():
    layout = LAYOUTS["random32"]
    values = torch.randn(layout.nnz, 32, 32, dtype=F64, requires_grad=True)
    b = torch.randn(64, 8, dtype=F64)
    blocksparse_matmul(values, b, layout, "dsd").sum().backward()
    assert values.grad is not None and b.grad is None


def test_dispatch():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert select_backend(cpu, torch.float32) == "cpu"
    assert select_backend(cpu, torch.float64) == "cpu"
    assert select_backend(cuda, torch.float64) == "reference"  # tl.dot has no fp64 path
    with pytest.raises(ValueError, match="backend must be one of triton, cpu, reference"):
        select_backend(cpu, torch.float32, "cuda")
    with pytest.raises(ValueError, match="backend 'cpu' needs CPU tensors"):
        select_backend(cuda, torch.float32, "cpu")


def _odd_values():
    return torch.randn(LAYOUTS["odd"].nnz, 16, 16)


@pytest.mark.parametrize("args, kwargs, exc, message", [
    ((_odd_values(), torch.randn(80, 8), "odd", "xyz"), {}, ValueError, "mode must be one of sdd, dsd, dds"),
    ((_odd_values(), torch.randn(80, 8), None, "dsd"), {}, TypeError, "layout must be a BlockLayout"),
    ((_odd_values(), torch.randn(80, 8, dtype=F64), "odd", "dsd"), {}, TypeError, "same dtype"),
    ((_odd_values(), torch.randn(80, 8, device="meta"), "odd", "dsd"), {}, ValueError, "same device"),
    ((_odd_values(), torch.randn(72, 8), "odd", "dsd"), {}, ValueError, "K=72 is not divisible by block size 16"),
    ((_odd_values(), torch.randn(96, 8), "odd", "dsd"), {}, ValueError, "inner dimensions differ"),
    ((torch.randn(3, 16, 16), torch.randn(80, 8), "odd", "dsd"), {}, ValueError,
     r"a \(block values\) hold 3 blocks \(dim -3\) but the layout stores 8"),
    ((torch.randn(8, 32, 32), torch.randn(80, 8), "odd", "dsd"), {}, ValueError,
     "hold 32x32 blocks but the layout's block is 16"),
    ((torch.randn(48, 8), torch.randn(8, 80), "odd", "sdd"), {}, ValueError, "sdd output is 48x80"),
    ((torch.randn(64, 8).int(), torch.randn(8, 80).int(), "odd", "sdd"), {}, TypeError, "floating-point"),
    ((torch.randn(2, 64, 8), torch.randn(3, 8, 80), "odd", "sdd"), {}, ValueError, "batch dims do not broadcast"),
    ((torch.randn(3, 48, 8), torch.randn(3, 8, 80), "heads", "sdd"), {}, ValueError, "has 3 heads"),
    ((_odd_values(), torch.randn(80, 8), "odd", "dsd"), {"backend": "triton_gpu"}, ValueError,
     "backend must be one of"),
    ((_odd_values(), torch.randn(80, 8), "odd", "dsd"), {"bias": torch.randn(80)}, ValueError,
     r"bias must have shape \[8\]"),
    ((torch.randn(64, 8), torch.randn(8, 80), "odd", "sdd"), {"bias": torch.randn(80)}, ValueError,
     "bias applies to a dense result"),
])
def test_errors_are_clear_one_liners(args, kwargs, exc, message):
    a, b, layout_name, mode = args
    layout = LAYOUTS[layout_name] if layout_name else None
    with pytest.raises(exc, match=message) as info:
        blocksparse_matmul(a, b, layout, mode, **kwargs)
    assert "\n" not in str(info.value)


def test_import_does_not_load_triton():
    code = ("import sys, spintui.kernels as k, torch; "
            "l = k.BlockLayout.random((64, 64), 16, 0.5); "
            "k.blocksparse_matmul(torch.randn(l.nnz, 16, 16), torch.randn(64, 4), l); "
            "print('triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
