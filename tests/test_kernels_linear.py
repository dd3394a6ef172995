"""BlockSparseLinear against nn.Linear holding the same dense masked weight."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spintui.kernels import BlockLayout, BlockSparseLinear, cpu

torch.set_num_threads(1)


@pytest.fixture(autouse=True, params=["per-block", "gather"])
def cpu_path(request, monkeypatch):
    """Run each test through both CPU strategies (small sizes would otherwise always gather)."""
    monkeypatch.setattr(cpu, "LOOP_MIN_BLOCK_WORK", 0 if request.param == "per-block" else 1 << 62)


def dense_twin(layer: BlockSparseLinear) -> nn.Linear:
    twin = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=layer.weight.dtype)
    with torch.no_grad():
        twin.weight.copy_(layer.to_dense())
        if layer.bias is not None:
            twin.bias.copy_(layer.bias)
    return twin


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_backward_match_nn_linear(bias):
    layer = BlockSparseLinear(96, 64, density=0.4, block=16, bias=bias, seed=3).double()
    twin = dense_twin(layer)
    x = torch.randn(2, 5, 96, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = layer(x1), twin(x2)
    assert y1.shape == (2, 5, 64)
    torch.testing.assert_close(y1, y2)
    grad_out = torch.randn_like(y1)
    y1.backward(grad_out)
    y2.backward(grad_out)
    torch.testing.assert_close(x1.grad, x2.grad)
    # the weight gradient is the dense gradient at the stored blocks, and zero is never stored
    torch.testing.assert_close(layer.weight.grad, layer.layout.values_from_dense(twin.weight.grad))
    if bias:
        torch.testing.assert_close(layer.bias.grad, twin.bias.grad)


def test_explicit_layout_and_training_step_keeps_sparsity():
    layout = BlockLayout.banded((64, 128), 32, width=1)
    layer = BlockSparseLinear(128, 64, layout=layout, block=32)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x, target = torch.randn(16, 128), torch.randn(16, 64)
    before = nn.functional.mse_loss(layer(x), target).item()
    for _ in range(20):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    assert nn.functional.mse_loss(layer(x), target).item() < 0.9 * before
    assert torch.equal(layer.to_dense() != 0, layout.dense_mask())
    assert layer.weight.shape == (layout.nnz, 32, 32)


def test_init_scale_follows_density():
    torch.manual_seed(0)
    for density in (1.0, 0.25):
        layer = BlockSparseLinear(1024, 256, density=density, block=32)
        bound = 1 / math.sqrt(1024 * density)
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
        # outputs keep nn.Linear's scale whatever the density
        y = layer(torch.randn(512, 1024))
        assert 0.45 < y.std().item() < 0.7  # nn.Linear: 1/sqrt(3) = 0.577


def test_state_dict_and_repr():
    layer = BlockSparseLinear(64, 32, density=0.5, block=16)
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert "density=0.500" in repr(layer) and "block=16" in repr(layer)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one of layout= or density="),
    (dict(density=0.5, layout=BlockLayout.random((32, 64), 16, 0.5)), "exactly one of layout= or density="),
    (dict(layout=BlockLayout.random((64, 32), 16, 0.5)), r"must be \(out_features, in_features\)"),
    (dict(density=0.5, block=48), "block size must be one of 16, 32, 64, 128"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BlockSparseLinear(64, 32, **kwargs)


def test_wrong_input_width():
    layer = BlockSparseLinear(64, 32, density=0.5, block=16)
    with pytest.raises(ValueError, match="in_features=64"):
        layer(torch.randn(4, 63))
