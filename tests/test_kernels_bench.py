"""kernels.bench.time_case: the check before timing, and the fields the profile sweep reads."""

from __future__ import annotations

import pytest
import torch

from spintui.kernels import bench

torch.set_num_threads(1)


@pytest.mark.parametrize("mode", ["sdd", "dsd", "dds"])
def test_time_case_reports_ratios(mode):
    r = bench.time_case(mode, 128, 96, 64, 32, 0.5, min_run_time=0.01, threads=1)
    assert r["mode"] == mode and r["threads"] == 1 and r["backend"] == "cpu" and r["dtype"] == "float32"
    assert r["max_rel_error"] < 1e-5
    assert r["s_dense"] > 0 and r["s_ours"] > 0
    assert r["speedup"] == pytest.approx(r["s_dense"] / r["s_ours"])
    assert r["fraction_of_ideal"] == pytest.approx(r["speedup"] * r["density"])
    assert (r["s_torch_bsr"] is not None) == (mode == "dsd")


def test_time_case_refuses_to_time_a_wrong_result(monkeypatch):
    real = bench.blocksparse_matmul
    monkeypatch.setattr(bench, "blocksparse_matmul", lambda *a, **k: real(*a, **k) * 1.01)
    with pytest.raises(AssertionError, match="relative error"):
        bench.time_case("dsd", 64, 64, 64, 32, 0.5, min_run_time=0.01)


@pytest.mark.parametrize("op", ["softmax", "attention"])
@pytest.mark.parametrize("backward", [False, True])
def test_time_op_checks_then_times_softmax_and_attention(op, backward):
    from spintui.kernels import bench_ops

    r = bench_ops.time_op(op, None, 128, 128, 32, 32, 0.5, min_run_time=0.01, threads=1, backward=backward,
                          layout_kind="strided")
    assert r["op"] == op and r["mode"] is None and r["causal"] is True and r["backend"] == "cpu"
    assert r["max_rel_error"] < 1e-5 and r["s_dense"] > 0 and r["s_ours"] > 0
    assert r["speedup"] == pytest.approx(r["s_dense"] / r["s_ours"])
    assert (r["tflops_effective"] is None) == (op == "softmax")
    assert r.get("s_flex") is None  # FlexAttention is a CUDA peer only


def test_time_op_refuses_a_wrong_softmax(monkeypatch):
    from spintui.kernels import bench_ops

    real = bench_ops.blocksparse_softmax
    monkeypatch.setattr(bench_ops, "blocksparse_softmax", lambda *a, **k: real(*a, **k) * 1.01)
    with pytest.raises(AssertionError, match="softmax .* relative error"):
        bench_ops.time_op("softmax", None, 64, 64, 64, 32, 0.5, min_run_time=0.01)
    with pytest.raises(ValueError, match="attention needs a square layout"):
        bench_ops.time_op("attention", None, 64, 128, 32, 32, 0.5, min_run_time=0.01)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_peer_uses_the_same_block_mask():
    """The GPU peer's BlockMask, checked eagerly on the CPU (forward only: no flex backward there)."""
    from spintui.kernels import bench_ops
    from spintui.kernels.attention import attention_dense
    from spintui.kernels.bench import make_layout

    layout = make_layout((256, 256), 64, 0.4, "strided")
    flex = bench_ops.flex_peer(layout, causal=True, compiled=False)
    if flex is None:
        pytest.skip("this torch has no FlexAttention")
    q, k, v = (torch.randn(1, 1, 256, 16) for _ in range(3))
    torch.testing.assert_close(flex(q, k, v), attention_dense(q, k, v, layout, causal=True), rtol=1e-4, atol=1e-5)
