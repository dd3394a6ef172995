"""`spintui profile blocksparse`: one-line usage errors, headless output, --json and --compare exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spintui.kernels import blocksparse_matmul
from spintui.profiles import kernel_sweep as ks, sweep_config as sc
from spintui.profiles.store import RunPaths, create_run, read_manifest

torch.set_num_threads(1)
GRID = ["--quick", "--sizes", "128", "--blocks", "32,64", "--densities", "0.5", "--modes", "dsd", "--threads", "1"]


def recorded_profile(runs_dir: Path, name: str, scale: float) -> Path:
    """A profile of GRID's cases recorded in this process, its times multiplied by `scale`."""
    cfg = sc.resolve_config(sizes="128", blocks="32,64", densities="0.5", modes="dsd", device="cpu", threads=1,
                            min_run_time=0.005)
    rd = create_run(runs_dir, kind="profile", benchmark=sc.BENCHMARK, name=name, config=cfg.to_dict())
    ks.run_sweep(rd)
    lines = []
    for line in RunPaths(rd).metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "kernel":
            rec["s_ours"] *= scale
        lines.append(json.dumps(rec))
    RunPaths(rd).metrics.write_text("\n".join(lines) + "\n")
    return rd


@pytest.mark.parametrize("args, fragments", [
    (["--blocks", "48"], ["--blocks", "'48'", "accepted: 16, 32, 64, 128"]),
    (["--sizes", "1000", "--blocks", "64"], ["1000,1000,1000 is not divisible by block 64"]),
    (["--sizes", "12,13"], ["--sizes", "M,N,K"]),
    (["--densities", "150%"], ["--densities", "(0, 1]"]),
    (["--dtypes", "int8"], ["--dtypes", "accepted: fp32, fp16, bf16, fp64"]),
    (["--modes", "dense"], ["--modes", "accepted: sdd, dsd, dds"]),
    (["--ops", "matmul,flash"],
     ["--ops must be comma-separated words from matmul, softmax, attention", "'matmul,flash'"]),
    (["--ops", "attention", "--sizes", "128,256,64"], ["M != N, but attention runs M = N tokens"]),
    (["--layout", "diagonal"], ["--layout must be one of random, banded, strided, got 'diagonal'"]),
    (["--threshold", "0"], ["--threshold must be a number in (0, 10)", "'0'"]),
    (["--seed", "-3"], ["--seed must be an integer in [0, 4294967295]", "'-3'"]),
    (["--device", "tpu"], ["--device must be one of auto, cpu, cuda, got 'tpu'"]),
    (["--threads", "0"], ["--threads must be an integer in [1, 1024]", "'0'"]),
    (["--compare", "nope"], ["--compare: no run 'nope'"]),
    (["--json", "/nonexistent/dir/p.json"], ["--json: cannot write"]),
    (["--name", "latest"], ["--name 'latest' is not a valid run name"]),
])
def test_bad_options_are_one_line_errors_exit_2(args, fragments, tmp_path, spintui_here):
    spintui_here("profile", "blocksparse", "--runs-dir", str(tmp_path), "--headless", *args).assert_one_line_error(2, *fragments)
    assert list(tmp_path.iterdir()) == [], "no run is created for a bad command"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(tmp_path, spintui_here):
    spintui_here("profile", "blocksparse", "--runs-dir", str(tmp_path), "--device", "cuda").assert_one_line_error(2, "--device cuda: no CUDA device is available here; use --device cpu or auto")


def test_dtype_this_torch_cannot_run_says_so(tmp_path, spintui_here, monkeypatch):
    real = torch.matmul

    def no_bf16(a, b, *args, **kwargs):
        if a.dtype == torch.bfloat16:
            raise RuntimeError('"addmm_impl_cpu_" not implemented for \'BFloat16\'')
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "matmul", no_bf16)
    spintui_here("profile", "blocksparse", "--runs-dir", str(tmp_path), "--dtypes", "bf16").assert_one_line_error(2, "--dtypes: bf16 is not supported on cpu by this torch build", "BFloat16")


def test_compare_with_a_train_run_is_refused(tmp_path, spintui_here):
    create_run(tmp_path, kind="train", name="sac-run", algo="sac", env="Pendulum-v1")
    spintui_here("profile", "blocksparse", "--runs-dir", str(tmp_path), "--compare", "sac-run").assert_one_line_error(2, "sac-run is a train run (sac), not a blocksparse profile")


def test_headless_regression_exits_1_with_json(tmp_path, spintui):
    """The real command in its own process: every case 5x slower than a doctored baseline -> exit 1."""
    recorded_profile(tmp_path, "baseline", scale=0.2)
    out_json = tmp_path / "profile.json"
    result = spintui("profile", "blocksparse", *GRID, "--headless", "--runs-dir", str(tmp_path), "--compare",
                     "baseline", "--json", str(out_json), "--name", "candidate", env={"COLUMNS": "200"})
    result.assert_one_line_error(1, "profile candidate: 2 regressions")
    lines = result.stdout.splitlines()
    assert sum("[slower +" in ln for ln in lines) == 2, result.stdout  # a line per case as it finishes
    assert f"vs baseline (threshold {sc.NOISE_THRESHOLD:.0%}): 2 slower" in result.stdout
    assert "dsd" in result.stdout and "speedup" in result.stdout and "check" in result.stdout  # the table
    data = json.loads(out_json.read_text())
    assert data["schema_version"] == 1 and len(data["cases"]) == 2
    assert data["compare"]["regressions"] == 2 and data["compare"]["baseline"] == "baseline"
    assert {c["compare"] for c in data["cases"]} == {"slower"}
    assert read_manifest(tmp_path / "candidate")["status"] == "finished"


def test_headless_faster_than_baseline_exits_0(tmp_path, spintui_here):
    recorded_profile(tmp_path, "baseline", scale=5.0)
    result = spintui_here("profile", "blocksparse", *GRID, "--headless", "--runs-dir", str(tmp_path),
                          "--compare", "latest")
    assert result.returncode == 0, result.stderr
    assert "2 faster" in result.stdout and "baseline" in result.stdout


def test_headless_softmax_and_attention(tmp_path, spintui_here):
    result = spintui_here("profile", "blocksparse", "--quick", "--sizes", "128,128,32", "--blocks", "32",
                          "--densities", "0.5", "--ops", "softmax,attention", "--threads", "1", "--headless",
                          "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "softmax + attention" in out  # the grid's description
    assert "softmax 128×128×32 blk 32" in out and "attention 128×128×32 blk 32" in out, out


def test_headless_wrong_case_is_red_and_exits_1(tmp_path, spintui_here, monkeypatch):
    import spintui.kernels.bench as bench

    def wrong(a, b, layout, mode, backend=None):
        out = blocksparse_matmul(a, b, layout, mode, backend=backend)
        return out + 1.0 if layout.block == 32 else out

    monkeypatch.setattr(bench, "blocksparse_matmul", wrong)
    result = spintui_here("profile", "blocksparse", *GRID, "--headless", "--runs-dir", str(tmp_path))
    result.assert_one_line_error(1, "1 WRONG")
    wrong_line = next(ln for ln in result.stdout.splitlines() if ln.startswith("[1/2]"))
    assert "WRONG" in wrong_line and "relative error" in wrong_line and "speedup" not in wrong_line
    assert "2 cases: 1 ok, 1 WRONG" in result.stdout
