"""What only a machine with an NVIDIA GPU can check; every test here skips cleanly without one.

The Triton kernels' own CUDA tests live in test_kernels_triton.py; these cover the paths around
them: BlockSparseLinear as a layer on the GPU, real NVML telemetry, and an off-policy trainer with
--device cuda whose checkpoint a CPU-only machine can evaluate.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-3), (torch.bfloat16, 3e-2)])
def test_blocksparse_linear_on_cuda_matches_a_dense_linear(dtype, tol):
    pytest.importorskip("triton")
    from spintui.kernels import BlockSparseLinear

    torch.manual_seed(0)
    layer = BlockSparseLinear(512, 384, density=0.25, block=64, device="cuda", dtype=dtype)
    dense = nn.Linear(512, 384, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        dense.weight.copy_(layer.to_dense().double())
        dense.bias.copy_(layer.bias.double())
    x = torch.randn(3, 70, 512, device="cuda", dtype=dtype, requires_grad=True)
    y = layer(x)
    x64 = x.detach().double().requires_grad_()
    want = dense(x64)
    assert float((y.detach().double() - want).abs().max() / want.abs().max()) < tol
    upstream = torch.randn_like(want)
    (y * upstream.to(dtype)).sum().backward()
    (want * upstream).sum().backward()
    assert float((x.grad.double() - x64.grad).abs().max() / x64.grad.abs().max()) < tol
    # the weight gradient lives on the layout's blocks only: compare it with those blocks of the dense gradient
    want_w = layer.layout.values_from_dense(dense.weight.grad)
    assert float((layer.weight.grad.double() - want_w).abs().max() / want_w.abs().max()) < tol


@needs_cuda
def test_nvml_sees_the_gpu_that_torch_uses():
    from spintui.profiles.gpu import open_gpu_sampler

    sampler, reason = open_gpu_sampler()
    if sampler is None:
        pytest.skip(f"CUDA works but NVML does not here: {reason}")
    keep = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")  # a context and 64 MiB in use
    try:
        sample = sampler.sample(trainer_pid=os.getpid())
    finally:
        sampler.close()
    del keep
    assert len(sample.gpus) == torch.cuda.device_count()
    gpu = sample.gpus[0]
    assert gpu.name and gpu.memory_total and gpu.memory_total > (1 << 30)
    assert gpu.memory_used is not None and 0 < gpu.memory_used <= gpu.memory_total
    assert gpu.utilization is not None and 0 <= gpu.utilization <= 100
    assert sample.trainer_match  # says how (or that) this process was found among the GPU's users


@needs_cuda
def test_sac_trains_on_cuda_and_its_checkpoint_evaluates_on_cpu(tmp_path):
    from spintui.algos import sac
    from spintui.algos.config import config_to_dict, make_config
    from spintui.algos.evaluate import evaluate
    from spintui.profiles.run_writer import RunWriter
    from spintui.profiles.store import create_run

    cfg = make_config("sac", {"env": "Pendulum-v1", "device": "cuda", "steps": 600, "start_steps": 200,
                              "update_after": 100, "steps_per_epoch": 300, "num_test_episodes": 1})
    run_dir = create_run(tmp_path, kind="train", algo="sac", env=cfg.env, seed=0, config=config_to_dict(cfg))
    writer = RunWriter(run_dir)
    row = sac.train(cfg, writer)
    writer.close()
    assert row["TotalEnvInteracts"] == 600
    assert torch.isfinite(torch.tensor(row["AverageTestEpRet"]))
    result = evaluate(run_dir, episodes=1, device="cpu")
    assert result["device"] == "cpu" and result["checkpoint_step"] == 600
