#!/usr/bin/env bash
# Every check and timing that needs an NVIDIA GPU, one after another, each under a time cap, so a
# short lease on a GPU box answers all of them; logs go to OUTDIR (one file per step).
#
#   benchmarks/gpu_checks.sh OUTDIR
#   PYTHON=.venv/bin/python SPINTUI=.venv/bin/spintui benchmarks/gpu_checks.sh OUTDIR   # other interpreters
#
# Steps: the CUDA tests (Triton kernels, BlockSparseLinear, NVML, SAC on cuda), the bf16 8192^3
# DSD grid against cuBLAS and torch's BSR kernel, softmax and attention (8192 tokens) against dense
# masked softmax, SDPA and compiled FlexAttention, SAC on HalfCheetah-v5 with --device cuda and then
# cpu (steps/s), and the default GPU grid of `spintui profile blocksparse`.
source "$(dirname "$0")/gpu_common.sh" "$@"
step tests 120 "$py" -m pytest -q -n 8 -p no:cacheprovider -k "not interpreter" \
    tests/test_cuda.py tests/test_kernels_triton.py tests/test_kernels_matmul.py tests/test_kernels_linear.py \
    tests/test_gpu_telemetry.py
step bench_blocksparse 130 "$py" benchmarks/bench_blocksparse.py --gpu --repeats 3
step bench_attention 150 "$py" benchmarks/bench_blocksparse.py --gpu --ops softmax,attention --repeats 3
sac=(train sac --env HalfCheetah-v5 --steps 3000 --start-steps 1000 --num-test-episodes 1 --headless --runs-dir "$runs")
step sac_cuda 50 "$spintui" "${sac[@]}" --device cuda --name sac_cuda
step sac_cpu 40 "$spintui" "${sac[@]}" --device cpu --name sac_cpu
step profile 130 "$spintui" profile blocksparse --device cuda --headless --runs-dir "$runs" --json "$out/profile.json"
