"""BlockLayout: indices, builders, dense and BSR round trips, device cache, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spintui.kernels import BlockLayout

torch.set_num_threads(1)


def test_csr_and_csc_indices_describe_the_mask():
    layout = BlockLayout.random((2, 128, 192), 32, 0.4, seed=5)
    mask = layout.mask.reshape(-1, layout.cols)  # [heads * rows, cols]
    for row in range(mask.shape[0]):
        start, end = layout.host["row_ptr"][row], layout.host["row_ptr"][row + 1]
        assert layout.col_idx[start:end].tolist() == mask[row].nonzero().flatten().tolist()
        assert all(layout.head_idx[p] * layout.rows + layout.row_idx[p] == row for p in range(start, end))
    col_mask = layout.mask.transpose(-1, -2).reshape(-1, layout.rows)  # [heads * cols, rows]
    for col in range(col_mask.shape[0]):
        start, end = layout.host["col_ptr"][col], layout.host["col_ptr"][col + 1]
        assert layout.csc_row_idx[start:end].tolist() == col_mask[col].nonzero().flatten().tolist()
        for p in range(start, end):  # the value index points back at the same block in row order
            v = layout.csc_value_idx[p]
            assert layout.col_idx[v] == col % layout.cols and layout.head_idx[v] == col // layout.cols
            assert layout.row_idx[v] == layout.csc_row_idx[p]
    lengths = layout.row_ptr.diff()[layout.row_order]
    assert bool((lengths[:-1] >= lengths[1:]).all())


def test_random_density_seed_and_heads():
    a = BlockLayout.random((256, 512), 64, 0.25, seed=1)
    assert a.nnz == round(0.25 * 4 * 8) and a.shape == (256, 512) and a.block == 64
    assert torch.equal(a.mask, BlockLayout.random((256, 512), 64, 0.25, seed=1).mask)
    assert not torch.equal(a.mask, BlockLayout.random((256, 512), 64, 0.25, seed=2).mask)
    h = BlockLayout.random((3, 256, 256), 32, 0.5, seed=0)
    assert h.has_heads and h.mask.shape == (3, 8, 8) and h.nnz == 3 * 32
    assert not torch.equal(h.mask[0], h.mask[1])


def test_banded_strided_fixed_patterns():
    band = BlockLayout.banded((4 * 16, 4 * 16), 16, width=1)
    assert band.mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    causal = BlockLayout.banded((64, 64), 16, width=1, causal=True)
    assert causal.mask.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    strided = BlockLayout.strided((6 * 16, 6 * 16), 16, stride=2)
    # row 5 sees itself, the previous block, and blocks 1 and 3 (same residue mod 2)
    assert strided.mask[5].nonzero().flatten().tolist() == [1, 3, 4, 5]
    assert not strided.mask.triu(1).any()
    fixed = BlockLayout.fixed((6 * 16, 6 * 16), 16, stride=3, summary=1)
    # row 4 sees its own chunk {3, 4} (causal) and the summary block 2 of chunk 0
    assert fixed.mask[4].nonzero().flatten().tolist() == [2, 3, 4]


def test_from_dense_keeps_largest_blocks():
    m = torch.zeros(64, 96)
    m[0:16, 32:48] = 5.0  # block (0, 2)
    m[48:64, 0:16] = -3.0  # block (3, 0)
    m[16:32, 80:96] = 0.1  # block (1, 5)
    top2 = BlockLayout.from_dense(m, 16, density=2 / 24)
    assert sorted(map(tuple, top2.mask.nonzero().tolist())) == [(0, 2), (3, 0)]
    thresh = BlockLayout.from_dense(m, 16, threshold=2.0)  # Frobenius norms: 80, 48, 1.6
    assert torch.equal(thresh.mask, top2.mask)
    assert BlockLayout.from_dense(m, 16, threshold=0.0).nnz == 3


def test_values_dense_round_trip_and_dense_mask():
    layout = BlockLayout.random((2, 64, 96), 16, 0.3, seed=2)
    values = torch.randn(5, layout.nnz, 16, 16)
    dense = layout.to_dense(values)
    assert dense.shape == (5, 2, 64, 96)
    assert torch.equal(layout.values_from_dense(dense), values)
    assert torch.equal(dense != 0, layout.dense_mask().expand_as(dense))


def test_bsr_round_trip_shares_storage():
    layout = BlockLayout.random((128, 64), 32, 0.5, seed=0)
    values = torch.randn(layout.nnz, 32, 32)
    bsr = layout.to_bsr(values)
    assert bsr.layout == torch.sparse_bsr
    assert bsr.values().data_ptr() == values.data_ptr()
    assert torch.equal(bsr.to_dense(), layout.to_dense(values))
    back, back_values = BlockLayout.from_bsr(bsr)
    assert torch.equal(back.mask, layout.mask) and back.block == 32
    assert back_values.data_ptr() == values.data_ptr()
    # a BSR tensor made by torch itself
    dense = layout.to_dense(values)
    torch_layout, torch_values = BlockLayout.from_bsr(dense.to_sparse_bsr((32, 32)))
    assert torch.equal(torch_layout.mask, layout.mask) and torch.equal(torch_values, values)


def test_bsr_with_heads():
    mask = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]]], dtype=torch.bool)
    layout = BlockLayout(mask, 16)
    values = torch.randn(layout.nnz, 16, 16)
    bsr = layout.to_bsr(values)
    assert bsr.shape == (2, 32, 32) and torch.equal(bsr.to_dense(), layout.to_dense(values))
    back, back_values = BlockLayout.from_bsr(bsr)
    assert torch.equal(back.mask, mask) and torch.equal(back_values, values)
    uneven = BlockLayout(torch.tensor([[[1, 1], [0, 1]], [[0, 1], [1, 0]]], dtype=torch.bool), 16)
    with pytest.raises(ValueError, match="same number of blocks in every head"):
        uneven.to_bsr(torch.randn(uneven.nnz, 16, 16))


def test_layout_is_immutable_and_device_cached():
    layout = BlockLayout.random((64, 64), 16, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.block = 32
    source = torch.ones(2, 2, dtype=torch.bool)
    copy = BlockLayout(source, 16)
    source[0, 0] = False
    assert copy.mask.all()  # the mask was cloned
    assert layout.to("cpu") is layout
    meta = layout.to("meta")
    assert meta is layout.to(torch.device("meta")) and meta.row_ptr.device.type == "meta"
    assert meta.nnz == layout.nnz and meta.to("cpu") is layout


def test_empty_rows_and_columns():
    mask = torch.tensor([[0, 0, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    layout = BlockLayout(mask, 16)
    assert layout.row_ptr.tolist() == [0, 0, 2, 2]
    assert layout.col_ptr.tolist() == [0, 1, 1, 2]
    empty = BlockLayout(torch.zeros(2, 2, dtype=torch.bool), 16)
    assert empty.nnz == 0 and empty.to_dense(torch.zeros(0, 16, 16)).abs().sum() == 0


@pytest.mark.parametrize("call, message", [
    (lambda: BlockLayout(torch.ones(2, 2), 24), "block size must be one of 16, 32, 64, 128"),
    (lambda: BlockLayout.random((100, 64), 32, 0.5), "not divisible by block size 32"),
    (lambda: BlockLayout.random((64, 64), 32, 1.5), r"density must be a number in \[0, 1\]"),
    (lambda: BlockLayout(torch.ones(2), 16), r"block mask must be \[rows, cols\]"),
    (lambda: BlockLayout.from_dense(torch.ones(64, 64), 32), "exactly one of density= or threshold="),
    (lambda: BlockLayout.random((64, 64), 32, 0.5).to_dense(torch.ones(3, 32, 32)), r"\[\.\.\., 2, 32, 32\]"),
    (lambda: BlockLayout.from_bsr(torch.ones(4, 4)), "from_bsr needs a torch.sparse_bsr tensor"),
])
def test_errors_are_one_line_and_name_accepted_values(call, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_transposed_layout_and_value_permutation():
    layout = BlockLayout.random((2, 64, 96), 16, 0.4, seed=8)
    values = torch.randn(layout.nnz, 16, 16)
    t = layout.transposed()
    assert t.shape == (2, 96, 64) and t.nnz == layout.nnz
    t_values = values[layout.transpose_permutation()].mT
    assert torch.equal(t.to_dense(t_values), layout.to_dense(values).mT)
