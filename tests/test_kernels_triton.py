"""The Triton kernels: under TRITON_INTERPRET=1 on the CPU (always), and on CUDA when a GPU exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spintui.kernels import BlockLayout, blocksparse_matmul

if sys.platform != "linux":  # triton ships for Linux only; the test extra installs it there
    pytest.skip("triton runs on Linux only", allow_module_level=True)
import triton  # noqa: E402,F401

torch.set_num_threads(1)

CASES = Path(__file__).with_name("triton_interpreter_cases.py")
# fp32 through the interpreter is exact up to fp32 rounding; fp16 inputs round to ~1e-3.
TOLERANCE = {"fp16": 5e-3, "default": 1e-5}


def interpreter_results() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(CASES)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow  # one interpreter run of every case: 15-30 s on 2 cores
def test_triton_kernels_under_interpreter_match_float64_dense():
    results = interpreter_results()
    names = set(results)
    for mode in ("sdd", "dsd", "dds"):
        for ta in (0, 1):
            for tb in (0, 1):
                assert {f"fwd-odd16-{mode}-ta{ta}-tb{tb}", f"fwd-heads32-batch-{mode}-ta{ta}-tb{tb}"} <= names
        assert {f"bwd-{mode}-plain", f"bwd-{mode}-transposed", f"fwd-fp16-{mode}", f"fwd-block64-{mode}"} <= names
    assert {f"fwd-persistent-{mode}-ta{ta}-tb{tb}" for mode in ("dsd", "dds") for ta in (0, 1)
            for tb in (0, 1)} <= names
    assert {"fwd-bias-dsd", "fwd-bias-dds"} <= names
    assert {f"softmax-{case}-causal{c}" for case in ("fwd-heads16-batch", "fwd-wide32", "fwd-fp16", "bwd-heads16")
            for c in (0, 1)} <= names
    assert {"attention-fwd-heads16-causal0", "attention-fwd-heads16-causal1", "attention-bwd-heads16-causal1"} <= names
    bad = {}
    for name, err in results.items():
        tol = TOLERANCE["fp16"] if "fp16" in name else TOLERANCE["default"]
        if not err <= tol:
            bad[name] = err
    assert not bad, f"relative errors above tolerance: {bad}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-3), (torch.float16, 1e-2), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("mode", ["sdd", "dsd", "dds"])
def test_cuda_matches_reference(mode, dtype, tol):
    layout = BlockLayout.random((2, 256, 384), 64, 0.3, seed=0)
    gen = torch.Generator(device="cuda").manual_seed(0)
    heads, rows, cols = 2, 256, 384

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda")

    if mode == "sdd":
        a, b = randn(heads, rows, 200), randn(heads, 200, cols)
    elif mode == "dsd":
        a, b = randn(layout.nnz, 64, 64), randn(heads, cols, 200)
    else:
        a, b = randn(heads, 200, rows), randn(layout.nnz, 64, 64)
    a, b = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
    out = blocksparse_matmul(a, b, layout, mode)
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    want = blocksparse_matmul(a64, b64, layout, mode, backend="reference")
    assert float((out.double() - want).abs().max() / want.abs().max()) < tol
    weight = torch.randn_like(want)
    got_grads = torch.autograd.grad((out * weight.to(dtype)).sum(), (a, b))
    want_grads = torch.autograd.grad((want * weight).sum(), (a64, b64))
    for g, w in zip(got_grads, want_grads):
        assert float((g.double() - w).abs().max() / w.abs().max()) < tol


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-3), (torch.float16, 1e-2), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_softmax_and_attention_match_the_fp64_reference(causal, dtype, tol):
    from spintui.kernels import attention, blocksparse_attention, blocksparse_softmax

    layout = BlockLayout.random((2, 256, 256), 64, 0.4, seed=1)
    gen = torch.Generator(device="cuda").manual_seed(0)
    values = 3 * torch.randn(3, layout.nnz, 64, 64, generator=gen, device="cuda", dtype=torch.float64)
    x = values.to(dtype).requires_grad_()
    y = blocksparse_softmax(x, layout, 0.5, causal)
    x64 = values.clone().requires_grad_()
    want = blocksparse_softmax(x64, layout, 0.5, causal, backend="reference")
    assert float((y.double() - want).abs().max()) < tol
    weight = torch.randn(values.shape, generator=gen, device="cuda", dtype=torch.float64)
    (grad,) = torch.autograd.grad((y * weight.to(dtype)).sum(), x)
    (want_grad,) = torch.autograd.grad((want * weight).sum(), x64)
    assert float((grad.double() - want_grad).abs().max() / want_grad.abs().max()) < tol
    q, k, v = (torch.randn(2, 2, 256, 64, generator=gen, device="cuda", dtype=torch.float64) for _ in range(3))
    out = blocksparse_attention(q.to(dtype), k.to(dtype), v.to(dtype), layout, causal=causal)
    ref = attention.attention_dense(q, k, v, layout, causal=causal)
    assert float((out.double() - ref).abs().max() / ref.abs().max()) < tol


TILE_KEY = {"dsd": "BLOCK_N", "dds": "BLOCK_M", "sdd": "BLOCK_K"}


def test_tuning_table_entries_are_well_formed():
    """Every entry names a real mode / block / dtype and gives the tile, warps and stages its kernel takes."""
    from spintui.kernels import BLOCK_SIZES, triton_kernels

    table = json.loads(triton_kernels.TUNING_FILE.read_text())
    assert "default" in table and all(mode in table["default"] for mode in TILE_KEY)
    for gpu, entry in table.items():
        if gpu.startswith("_"):
            continue
        for key, meta in entry.items():
            mode, *rest = key.split("/")
            assert mode in TILE_KEY, f"{gpu}: {key}"
            if rest:
                assert rest[0].startswith("b") and int(rest[0][1:]) in BLOCK_SIZES, f"{gpu}: {key}"
            if len(rest) > 1:
                assert isinstance(getattr(torch, rest[1], None), torch.dtype), f"{gpu}: {key}"
            assert {TILE_KEY[mode], "num_warps", "num_stages"} <= set(meta), f"{gpu}: {key}"


def test_meta_parameters_prefer_the_gpus_own_dtype_specific_entry(monkeypatch):
    from spintui.kernels import triton_kernels

    table = json.loads(triton_kernels.TUNING_FILE.read_text())
    gpu = next(name for name in table if name not in ("default", "_comment"))
    key = next(k for k in table[gpu] if k.startswith("dsd/") and k.count("/") == 2)
    _, block, dtype = key.split("/")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    cuda = torch.device("cuda")
    assert triton_kernels.meta_parameters("dsd", int(block[1:]), getattr(torch, dtype), cuda) == table[gpu][key]
    # another dtype on the same GPU falls back to the default entry (tiles sized for 2-byte inputs may not fit fp32)
    other = triton_kernels.meta_parameters("dsd", int(block[1:]), torch.float64, cuda)
    defaults = table["default"]
    assert other == defaults.get(f"dsd/{block}", defaults["dsd"])


def test_tuning_script_runs_under_the_interpreter(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "tune_blocksparse.py"
    out = tmp_path / "tuning.json"
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--size", "64", "--blocks", "32",
                           "--modes", "dsd", "--tiles", "32,64", "--warps", "4", "--stages", "2", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = json.loads(out.read_text())["interpreter"]["dsd/b32/float32"]
    assert entry["BLOCK_N"] in (32, 64) and entry["num_warps"] == 4
    assert "best" in proc.stdout
