#!/usr/bin/env bash
# GPU history and traces of training on a real NVIDIA GPU, in under two minutes; logs go to OUTDIR.
#
#   benchmarks/gpu_trace_checks.sh OUTDIR
#   PYTHON=.venv/bin/python SPINTUI=.venv/bin/spintui benchmarks/gpu_trace_checks.sh OUTDIR
#
# Steps: SAC on cuda with --trace 2:3 (NVML samples in the run, a trace with CUDA kernels in its table),
# `profile train sac --device cuda` (headless, --json), a quick `profile blocksparse` on cuda (its GPU
# history), the logger's cost with real NVML, and a check of all of it that ends in PASS or FAIL lines.
TAIL_LINES=12
source "$(dirname "$0")/gpu_common.sh" "$@"
step train_trace 35 "$spintui" train sac --env Pendulum-v1 --device cuda --steps 1400 --update-after 1000 \
    --num-test-episodes 1 --trace 2:3 --headless --runs-dir "$runs" --name sac_cuda_trace
step profile_train 30 "$spintui" profile train sac --env Pendulum-v1 --device cuda --num-test-episodes 1 \
    --headless --runs-dir "$runs" --name sac_cuda_profile --json "$out/profile_train.json"
step profile_blocksparse 25 "$spintui" profile blocksparse --device cuda --quick --headless --runs-dir "$runs" \
    --name bs_cuda
step logger_cost 25 "$py" benchmarks/bench_gpu_logger.py --nvml --rounds 2 --steps 1500
step verify 10 "$py" - "$runs" "$out" <<'EOF'
import gzip, json, sys
from pathlib import Path
from spintui.profiles.run_reader import RunReader
runs = Path(sys.argv[1])
def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
for name in ("sac_cuda_trace", "sac_cuda_profile", "bs_cuda"):
    recs = RunReader(runs / name).poll().records if (runs / name).exists() else []
    gpu = [r for r in recs if r["kind"] == "gpu"]
    check(len(gpu) >= 2, f"{name}: {len(gpu)} GPU samples in the run")
    if gpu:
        g = gpu[-1]["gpus"][0]
        check(all(g.get(k) is not None for k in ("utilization", "memory_used", "temperature_c", "sm_clock_mhz")),
              f"{name}: util {g.get('utilization')}% mem {g.get('memory_used')} power {g.get('power_w')} W "
              f"temp {g.get('temperature_c')} C SM {g.get('sm_clock_mhz')} MHz")
        own = gpu[-1].get("own_memory")
        check(g.get("trainer_memory") is not None or (own or 0) > 0 or name == "bs_cuda",
              f"{name}: trainer memory NVML {g.get('trainer_memory')} torch {own} ({gpu[-1]['trainer_match']})")
    json.dump(gpu[:12], open(Path(sys.argv[2]) / f"{name}_gpu_samples.json", "w"))  # recorded samples for tests
    traces = [r for r in recs if r["kind"] == "trace"]
    if name != "bs_cuda":
        check(bool(traces) and any(r["source"] == "cuda" for r in traces[-1]["rows"]),
              f"{name}: trace rows with CUDA kernels")
        if traces:
            data = json.load(gzip.open(runs / name / traces[-1]["file"], "rt"))
            check(any(e.get("cat") == "kernel" for e in data["traceEvents"]), f"{name}: kernels in the Chrome trace")
EOF
