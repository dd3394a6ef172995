"""The blocksparse profile sweep on CPU: grid, correctness gate, JSON schema and --compare verdicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from spintui.algos.config import ConfigError
from spintui.kernels import blocksparse_matmul
from spintui.profiles import kernel_sweep as ks, sweep_config as sc, sweep_results as sr
from spintui.profiles.run_reader import RunReader
from spintui.profiles.store import RunPaths, create_run, read_manifest

torch.set_num_threads(1)


def tiny_run(runs_dir: Path, name: str = "tiny", **options) -> Path:
    values = dict(sizes="128 256,128,128", blocks="32,64", densities="50%,25%", dtypes="fp32", modes="dsd,sdd",
                  device="cpu", threads=1, min_run_time=0.005)
    values.update(options)
    cfg = sc.resolve_config(**values)
    return create_run(runs_dir, kind="profile", benchmark=sc.BENCHMARK, name=name, config=cfg.to_dict())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A finished tiny sweep: 2 sizes (128³ and M,N,K = 256,128,128) x 2 blocks x 2 densities x 2 modes."""
    rd = tiny_run(tmp_path_factory.mktemp("runs"))
    result = ks.run_sweep(rd)
    assert result.status == "finished"
    return rd


def test_tiny_sweep_records_every_case_with_consistent_columns(recorded):
    cases = sr.kernel_records(recorded)
    assert len(cases) == 16
    assert {(c["mode"], c["M"], c["block"], c["density"]) for c in cases} == {
        (m, s, b, d) for m in ("dsd", "sdd") for s in (128, 256) for b in (32, 64) for d in (0.5, 0.25)}
    for c in cases:
        assert c["status"] == "ok" and c["error"] is None, c
        assert c["max_rel_error"] <= c["tolerance"] == 1e-4
        assert c["speedup"] == pytest.approx(c["s_dense"] / c["s_ours"])
        assert c["fraction_of_ideal"] == pytest.approx(c["speedup"] * c["density_actual"])
        flops = 2 * c["M"] * c["N"] * c["K"] * c["density_actual"]
        assert c["tflops_effective"] == pytest.approx(flops / c["s_ours"] / 1e12)
        # torch's BSR kernel exists for sparse @ dense only
        assert (c["s_torch_bsr"] is not None) == (c["mode"] == "dsd")
        if c["mode"] == "dsd":
            assert c["speedup_vs_torch_bsr"] == pytest.approx(c["s_torch_bsr"] / c["s_ours"])
        sparse_shape = c["M"] * (c["K"] if c["mode"] == "dsd" else c["N"])  # S in S @ D, or the sampled C
        values = sparse_shape * c["density_actual"] * 4
        assert values < c["sparse_bytes"] < values + 4096, "block values plus a few index tensors"
        assert c["dense_bytes"] == sparse_shape * 4
        assert c["launch_bound"] == (c["s_ours"] < ks.CPU_LAUNCH_BOUND_S)
        assert c["threads"] == 1 and c["backend"] == "cpu"
    manifest = read_manifest(recorded)
    assert manifest["status"] == "finished" and manifest["kind"] == "profile"
    assert manifest["progress"]["step"] == manifest["progress"]["total_steps"] == 16
    env = manifest["environment"]
    assert env["device"] == "cpu" and env["threads"] == 1 and env["device_name"]
    assert env["torch"] == torch.__version__ and "thread CPU time" in env["timer"]
    assert "driver" in env and "triton" in env and "git_revision" in env


def test_wrong_kernel_is_marked_wrong_and_never_timed(tmp_path, monkeypatch):
    """The gate: a product that is 1% off for block 64 must show as WRONG, with no speedup."""
    import spintui.kernels.bench as bench

    def off_for_block_64(a, b, layout, mode, backend=None):
        out = blocksparse_matmul(a, b, layout, mode, backend=backend)
        return out * 1.01 if layout.block == 64 else out

    monkeypatch.setattr(bench, "blocksparse_matmul", off_for_block_64)  # what time_case calls
    rd = tiny_run(tmp_path, sizes="128", densities="0.5")
    seen = []
    result = ks.run_sweep(rd, on_case=lambda rec, done, total, eta: seen.append((done, total, rec["status"])))
    assert result.status == "finished" and result.wrong == 2 and result.errors == 0
    assert [d for d, _, _ in seen] == [1, 2, 3, 4] and all(t == 4 for _, t, _ in seen)
    for c in sr.kernel_records(rd):
        if c["block"] == 64:
            assert c["status"] == "WRONG" and "relative error 1.00e-02 > 1e-04" in c["error"]
            assert c["max_rel_error"] == pytest.approx(0.01, rel=1e-3)
            for key in ("s_ours", "s_dense", "s_torch_bsr", "speedup", "fraction_of_ideal", "tflops_effective",
                        "speedup_vs_torch_bsr", "launch_bound"):
                assert c[key] is None, key
        else:
            assert c["status"] == "ok" and c["speedup"] > 0
    assert read_manifest(rd)["progress"]["wrong"] == 2


def test_an_exception_in_a_case_is_recorded_and_the_sweep_goes_on(tmp_path):
    def broken_sdd(a, b, layout, mode, backend=None):
        if mode == "sdd":
            raise RuntimeError("kernel exploded\nsecond line")
        return blocksparse_matmul(a, b, layout, mode, backend=backend)

    rd = tiny_run(tmp_path, sizes="128", blocks="32", densities="0.5")
    result = ks.run_sweep(rd, kernel=broken_sdd)
    by_mode = {c["mode"]: c for c in result.cases}
    assert by_mode["sdd"]["status"] == "error" and by_mode["sdd"]["error"] == "RuntimeError: kernel exploded"
    assert by_mode["sdd"]["speedup"] is None
    assert by_mode["dsd"]["status"] == "ok"
    assert read_manifest(rd)["status"] == "finished"


def test_backward_and_patterned_layouts(tmp_path):
    """--backward checks gradients too; a pattern that gives the same layout twice is timed once."""
    rd = tiny_run(tmp_path, sizes="128", blocks="32", densities="0.5,0.25,0.1", modes="sdd,dsd,dds",
                  layout="banded", backward=True)
    result = ks.run_sweep(rd)
    # 4x4 blocks: band width 1 stores 62.5%, width 0 25%, so 25% and 10% are the same band (a note per mode)
    assert len(result.notes) == 3 and all("density 0.1 gives the same layout as 0.25" in n for n in result.notes)
    assert len(result.cases) == 6
    assert sorted({c["density_actual"] for c in result.cases}) == [0.25, 0.625]
    for c in result.cases:
        assert c["status"] == "ok" and c["backward"] is True and c["layout"] == "banded"
        assert c["s_torch_bsr"] is None, "torch BSR has no usable backward"
        flops = 3 * 2 * 128 ** 3 * c["density_actual"]
        assert c["tflops_effective"] == pytest.approx(flops / c["s_ours"] / 1e12)
    events = [r for r in RunReader(rd).poll().records if r.get("kind") == "event"]
    assert len(events) == 3


def test_strided_layout_is_causal_and_near_the_density():
    from spintui.kernels.bench import make_layout

    for density in (0.5, 0.25):
        layout = make_layout((1024, 1024), 32, density, "strided")
        assert not layout.mask.triu(1).any(), "causal: nothing above the diagonal"
        assert abs(layout.density - density) < 0.01
    # below ~23% of 32x32 blocks no stride gets closer: the sparsest strided pattern is used
    assert make_layout((1024, 1024), 32, 0.1, "strided").density < 0.25


def test_wrong_gradient_is_caught_with_backward(tmp_path):
    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * 2.0

    def kernel(a, b, layout, mode, backend=None):
        return WrongGrad.apply(blocksparse_matmul(a, b, layout, mode, backend=backend))

    rd = tiny_run(tmp_path, sizes="128", blocks="32", densities="0.5", modes="dsd", backward=True)
    (case,) = ks.run_sweep(rd, kernel=kernel).cases
    assert case["status"] == "WRONG" and "gradient" in case["error"] and case["s_ours"] is None


def test_option_parsing_and_errors():
    assert sc.parse_sizes("1024; 256,512,128 64x32x64") == [(1024,) * 3, (256, 512, 128), (64, 32, 64)]
    assert sc.parse_densities("50%,25%, 0.1") == [0.5, 0.25, 0.1]
    assert sc.parse_dtypes("bf16,float32,half") == ["bf16", "fp32", "fp16"]
    assert sc.parse_blocks("32,64,32") == [32, 64]
    for fn, text, fragment in [
        (sc.parse_blocks, "32,48", "accepted: 16, 32, 64, 128"),
        (sc.parse_sizes, "12,13", "M,N,K"),
        (sc.parse_sizes, "-5", "M,N,K"),
        (sc.parse_densities, "150%", "(0, 1]"),
        (sc.parse_densities, "0", "(0, 1]"),
        (sc.parse_dtypes, "int8", "accepted: fp32, fp16, bf16, fp64"),
        (sc.parse_modes, "dense", "accepted: sdd, dsd, dds"),
    ]:
        with pytest.raises(ConfigError, match=None) as info:
            fn(text)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="not divisible by block 64"):
        sc.resolve_config(sizes="1000", blocks="64", device="cpu")
    with pytest.raises(ConfigError, match="random, banded, strided"):
        sc.resolve_config(layout="diagonal", device="cpu")


def test_device_defaults():
    cfg = sc.resolve_config(device="cpu")
    assert cfg.sizes == [(512,) * 3, (1024,) * 3] and cfg.dtypes == ["fp32"] and cfg.blocks == [32, 64]
    assert cfg.densities == [0.5, 0.25, 0.1, 0.05] and cfg.threads == 1
    quick = sc.resolve_config(device="cpu", quick=True)
    assert quick.n_grid < cfg.n_grid
    gpu = sc.GRIDS["cuda"]
    assert gpu["sizes"] == [(4096,) * 3, (8192,) * 3] and gpu["blocks"] == [32, 64, 128]
    assert gpu["dtypes"] == ["bf16"] and gpu["densities"] == [0.5, 0.25, 0.1, 0.05]


# ------------------------------------------------------------------------------------------------
# JSON


CASE_FIELDS = {
    "op": str, "mode": str, "M": int, "N": int, "K": int, "block": int, "density": float, "density_actual": float,
    "dtype": str, "layout": str, "backward": bool, "status": str, "error": type(None),
    "max_rel_error": float, "tolerance": float, "s_dense": float, "s_ours": float, "s_ours_graph": type(None),
    "tflops_effective": float, "speedup": float, "fraction_of_ideal": float, "sparse_bytes": int,
    "dense_bytes": int, "launch_bound": bool, "backend": str, "threads": int,
}


def test_profile_json_schema(recorded, tmp_path):
    path = tmp_path / "profile.json"
    sr.write_profile_json(recorded, path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == sr.SCHEMA_VERSION == 1
    assert data["kind"] == "spintui.blocksparse_profile"
    assert set(data) == {"schema_version", "kind", "run", "environment", "config", "cases", "compare"}
    assert data["run"]["name"] == recorded.name and data["run"]["status"] == "finished"
    assert {"device", "device_name", "threads", "driver", "torch", "triton", "python", "spintui",
            "git_revision", "host", "launch_overhead_s", "timer"} <= set(data["environment"])
    assert data["config"]["sizes"] == [[128, 128, 128], [256, 128, 128]]
    assert data["compare"] is None and len(data["cases"]) == 16
    for case in data["cases"]:
        assert set(sr.CASE_KEY) <= set(case)
        for key, kind in CASE_FIELDS.items():
            assert isinstance(case[key], kind), (key, case[key])
        assert isinstance(case["s_torch_bsr"], float if case["mode"] == "dsd" else type(None))
        assert case["mode"] in sc.MODES and case["dtype"] in sc.DTYPES and case["status"] in ("ok", "WRONG", "error")
        assert case["op"] == "matmul" and case["s_flex"] is None


# ------------------------------------------------------------------------------------------------
# Compare


def doctored_copy(run_dir: Path, dest: Path, scale) -> Path:
    """A copy of a recorded profile whose s_ours is multiplied by scale(case)."""
    shutil.copytree(run_dir, dest)
    lines = []
    for line in RunPaths(dest).metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "kernel" and rec.get("s_ours"):
            rec["s_ours"] *= scale(rec)
        lines.append(json.dumps(rec))
    RunPaths(dest).metrics.write_text("\n".join(lines) + "\n")
    return dest


def test_compare_two_recorded_profiles(recorded, tmp_path):
    def scale(rec):  # the baseline was 2x faster on one case and 2x slower on another
        return {("dsd", 128, 32, 0.5): 0.5, ("sdd", 256, 64, 0.25): 2.0}.get(
            (rec["mode"], rec["M"], rec["block"], rec["density"]), 1.0)

    baseline = doctored_copy(recorded, tmp_path / "baseline", scale)
    cases = sr.kernel_records(recorded)
    cases[3] = {**cases[3], "status": "WRONG", "s_ours": None}
    out = sr.compare_profiles(cases, sr.kernel_records(baseline), threshold=0.15)
    verdicts = {(c["mode"], c["M"], c["block"], c["density"]): c["compare"] for c in out["cases"]}
    assert verdicts.pop(("dsd", 128, 32, 0.5)) == "slower"
    assert verdicts.pop(("sdd", 256, 64, 0.25)) == "faster"
    key3 = (cases[3]["mode"], cases[3]["M"], cases[3]["block"], cases[3]["density"])
    assert verdicts.pop(key3) == "WRONG"
    assert set(verdicts.values()) == {"same"}
    assert out["counts"] == {"faster": 1, "slower": 1, "same": 13, "new": 0, "WRONG": 1, "error": 0}
    assert out["regressions"] == 2
    slower = next(c for c in out["cases"] if c["compare"] == "slower")
    assert slower["change"] == pytest.approx(2.0)
    # within the threshold either way is "same"; a case missing from the baseline is "new"
    assert sr.compare_case({**cases[0], "s_ours": cases[0]["s_ours"] * 1.1},
                           {sr.case_key(cases[0]): cases[0]}, 0.15)[0] == "same"
    assert sr.compare_case(cases[0], {}, 0.15)[0] == "new"


# ------------------------------------------------------------------------------------------------
# --ops: softmax and attention beside the products


def test_ops_sweep_times_softmax_and_attention_against_their_dense_peers(tmp_path):
    rd = tiny_run(tmp_path, sizes="128 128,128,32", blocks="32", densities="0.5", modes="dds",
                  ops=["attention", "softmax", "matmul"])
    cfg = sc.SweepConfig.from_dict(read_manifest(rd)["config"])
    assert cfg.ops == ["attention", "softmax", "matmul"] and cfg.n_grid == 6
    result = ks.run_sweep(rd)
    cases = result.cases
    assert [(c["op"], c["mode"], c["K"]) for c in cases] == [
        ("attention", None, 128), ("softmax", None, 128), ("matmul", "dds", 128),
        ("attention", None, 32), ("softmax", None, 32), ("matmul", "dds", 32)]
    for c in cases:
        assert c["status"] == "ok", c
        assert c["max_rel_error"] <= c["tolerance"] and c["s_dense"] > 0 and c["s_ours"] > 0
        assert c["speedup"] == pytest.approx(c["s_dense"] / c["s_ours"])
        assert c["s_flex"] is None and c["s_torch_bsr"] is None  # no FlexAttention peer on the CPU
        if c["op"] == "softmax":
            assert c["tflops_effective"] is None
        if c["op"] == "attention":
            flops = 4 * c["M"] * c["M"] * c["K"] * c["density_actual"]
            assert c["tflops_effective"] == pytest.approx(flops / c["s_ours"] / 1e12)
    # compared with itself, every case matches its own kind (op is part of the identity)
    out = sr.compare_profiles(cases, cases, threshold=0.15)
    assert out["counts"]["same"] == 6


def test_profiles_recorded_before_ops_mean_matmul(recorded):
    old = [{k: v for k, v in c.items() if k != "op"} for c in sr.kernel_records(recorded)]
    assert sr.case_key(old[0]) == sr.case_key(sr.kernel_records(recorded)[0])
    out = sr.compare_profiles(sr.kernel_records(recorded), old, threshold=0.15)
    assert out["counts"]["new"] == 0
    config = {k: v for k, v in read_manifest(recorded)["config"].items() if k != "ops"}
    assert sc.SweepConfig.from_dict(config).ops == ["matmul"]


def test_ops_option_errors():
    with pytest.raises(ConfigError, match="--ops: 'dense' is not an op; accepted: matmul, softmax, attention"):
        sc.resolve_config(ops="matmul,dense", device="cpu")
    with pytest.raises(ConfigError, match="M != N, but attention runs M = N tokens"):
        sc.resolve_config(sizes="128,256,64", ops=["attention"], device="cpu")
    cfg = sc.resolve_config(sizes="128,256,64", ops="softmax,matmul,softmax", device="cpu")
    assert cfg.ops == ["softmax", "matmul"]
