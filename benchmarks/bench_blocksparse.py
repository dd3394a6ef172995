"""Block-sparse matmul vs dense torch.matmul and torch's BSR kernel; softmax and attention vs their dense peers.

    python benchmarks/bench_blocksparse.py                 # CPU: the issue's case, 1 thread
    python benchmarks/bench_blocksparse.py --threads 2 --sweep
    python benchmarks/bench_blocksparse.py --ops matmul,softmax,attention
    python benchmarks/bench_blocksparse.py --gpu           # CUDA: bf16 8192^3 DSD grid (needs a GPU)

Softmax and attention (kernels/bench_ops.py) run at density 10% with blocks 64 (--sweep: blocks 32
and 64, densities 25/10/5%): softmax of a 2048^2 layout against dense masked softmax, attention of
2048 tokens with head dim 64 against SDPA with the mask (on a GPU 8192 tokens, head dim 128, and
FlexAttention compiled with the same block mask).

Each case is checked against a dense matmul before it is timed. Every repeat times all peers
back to back, and the table shows the median over repeats of each ratio, so a noisy neighbour
shifts all peers of a repeat together. Speedup is dense time / our time; fraction of ideal is
speedup x density (1.0 = the time saved equals the work skipped).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from spintui.kernels.bench import CPU_CASE, CPU_SWEEP, GPU_GRID, GPU_OP_CASES, OP_CASES, OPS
from spintui.kernels.bench_ops import time_op


def op_cases(ops: list[str], sweep: bool, gpu: bool) -> list[dict]:
    """The cases of each op in `ops` (matmul: the usual ones)."""
    out = []
    for op in ops:
        if op == "matmul":
            out += [dict(op="matmul", **c) for c in (GPU_GRID if gpu else CPU_SWEEP if sweep else [CPU_CASE])]
            continue
        shape = (GPU_OP_CASES if gpu else OP_CASES)[op]
        grid = [(b, d) for b in (32, 64) for d in (0.25, 0.10, 0.05)] if sweep else [(64, 0.10)]
        out += [dict(op=op, mode=None, **shape, block=b, density=d) for b, d in grid]
    return out


def run_case(case: dict, repeats: int, **kw) -> dict:
    runs = [time_op(**case, **kw) for _ in range(repeats)]
    summary = dict(runs[0])
    for key in ("s_dense", "s_ours", "s_torch_bsr", "s_flex", "speedup", "fraction_of_ideal", "tflops_effective",
                "speedup_torch_bsr", "ours_over_torch_bsr"):
        values = [r[key] for r in runs if r.get(key) is not None]
        summary[key] = statistics.median(values) if values else None
    summary["speedups"] = [r["speedup"] for r in runs]
    return summary


def fmt(value, spec, suffix=""):
    return "-" if value is None else format(value, spec) + suffix



def print_table(rows: list[dict], header: bool = True) -> None:
    if header:
        print(f"{'op':9} {'M':>5} {'N':>5} {'K':>5} {'blk':>4} {'dens':>5} {'dense ms':>9} {'bsr ms':>8} "
              f"{'ours ms':>8} {'speedup':>8} {'bsr x':>6} {'flex ms':>8} {'frac':>5} {'TFLOP/s':>8} {'rel err':>8}")
    for r in rows:
        print(f"{r['mode'] or r['op']:9} {r['M']:5} {r['N']:5} {r['K']:5} {r['block']:4} {r['density']:5.3f} "
              f"{r['s_dense'] * 1e3:9.2f} {fmt(r['s_torch_bsr'] and r['s_torch_bsr'] * 1e3, '8.2f'):>8} "
              f"{r['s_ours'] * 1e3:8.2f} {r['speedup']:7.2f}x {fmt(r.get('speedup_torch_bsr'), '5.2f', 'x'):>6} "
              f"{fmt(r.get('s_flex') and r['s_flex'] * 1e3, '8.2f'):>8} {r['fraction_of_ideal']:5.2f} "
              f"{fmt(r['tflops_effective'], '8.3f'):>8} {r['max_rel_error']:8.1e}")
        if len(r["speedups"]) > 1:
            print(f"      speedup per repeat: {', '.join(f'{s:.2f}' for s in r['speedups'])}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every peer (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="repeats per case; ratios are medians (default 5)")
    p.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing (default 1.0)")
    p.add_argument("--sweep", action="store_true", help="CPU: all modes, blocks 32/64, densities 25/10/5%%")
    p.add_argument("--gpu", action="store_true", help="time the CUDA bf16 8192^3 DSD grid instead")
    p.add_argument("--ops", default="matmul", help=f"comma-separated, from {', '.join(OPS)} (default matmul)")
    p.add_argument("--persistent", action="store_true", help="GPU: use the persistent DSD Triton kernel")
    p.add_argument("--programs-per-sm", type=int, default=2, help="GPU: programs per SM when --persistent")
    args = p.parse_args(argv)
    ops = [op for op in args.ops.split(",") if op]
    if not ops or any(op not in OPS for op in ops):
        p.error(f"--ops: give a comma-separated list from {', '.join(OPS)}, got {args.ops!r}")

    if args.gpu:
        if not torch.cuda.is_available():
            print("error: --gpu needs a CUDA device; none is visible", file=sys.stderr)
            return 1
        if args.persistent:
            from spintui.kernels import triton_kernels
            meta = triton_kernels.meta_parameters("dsd", 64, torch.bfloat16, torch.device("cuda"))
            triton_kernels.OVERRIDES["dsd"] = dict(meta, PERSISTENT=True, PROGRAMS_PER_SM=args.programs_per_sm)
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, "
              f"{'persistent' if args.persistent else 'plain'} DSD kernel, "
              f"triton.testing.do_bench median; ratios are medians of {args.repeats} repeats")
        for i, case in enumerate(op_cases(ops, args.sweep, gpu=True)):
            row = run_case(case, args.repeats, dtype=torch.bfloat16, device="cuda", min_run_time=args.min_run_time)
            print_table([row], header=i == 0)
            sys.stdout.flush()
        return 0

    print(f"CPU: torch {torch.__version__}, fp32, {args.threads} thread(s) for every peer, "
          f"torch.utils.benchmark medians; ratios are medians of {args.repeats} repeats")
    for i, case in enumerate(op_cases(ops, args.sweep, gpu=False)):
        row = run_case(case, args.repeats, threads=args.threads, min_run_time=args.min_run_time)
        print_table([row], header=i == 0)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
