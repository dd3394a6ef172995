"""CPU thread scaling: DSD, DDS and BlockSparseLinear against dense at 1 and 2 threads.

    python benchmarks/bench_blocksparse_threads.py                  # 2048^3 fp32, density 10%, block 64
    python benchmarks/bench_blocksparse_threads.py --threads 1,2 --repeats 9
    python benchmarks/bench_blocksparse_threads.py --per-block-threads   # the previous scheme, to compare

Every repeat runs, for each case, dense then ours back to back (interleaved), `--calls` calls each,
and the table shows medians over repeats. Two clocks: the CPU time of the busiest thread of the
process (from /proc/self/task/*/schedstat, nanoseconds: on a shared machine it leaves out the time
other processes held the cores, and with several threads it is the critical path of the work), and
wall time (what a user waits for, load included). Speedup is dense / ours on the same clock at the
same thread count. `--per-block-threads` turns off the thread split (kernels/threads.py), so each
block's GEMM is threaded by torch as before it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from spintui.kernels import BlockLayout, BlockSparseLinear, blocksparse_matmul


def thread_cpu_ns() -> dict[str, int]:
    """Nanoseconds each thread of this process has run (schedstat's first field), by thread id."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            out[task.name] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def timed(fn, calls: int) -> tuple[float, float]:
    """(busiest thread's CPU seconds, wall seconds) per call, over `calls` calls after one warm-up."""
    fn()
    before, start = thread_cpu_ns(), time.perf_counter()
    for _ in range(calls):
        fn()
    wall = time.perf_counter() - start
    after = thread_cpu_ns()
    busiest = max(after[t] - before.get(t, 0) for t in after)
    return busiest / 1e9 / calls, wall / calls


def cases(size: int, block: int, density: float, seed: int = 0) -> dict:
    """name -> (dense fn, ours fn); operands shared by both."""
    gen = torch.Generator().manual_seed(seed)
    layout = BlockLayout.random((size, size), block, density, seed=seed)
    values = torch.randn(layout.nnz, block, block, generator=gen)
    sparse = layout.to_dense(values)
    b = torch.randn(size, size, generator=gen)
    a = torch.randn(size, size, generator=gen)
    ours_linear = BlockSparseLinear(size, size, layout=layout)
    dense_linear = nn.Linear(size, size)
    x = torch.randn(size, size, generator=gen)
    x_grad = x.clone().requires_grad_()
    g = torch.randn(size, size, generator=gen)

    def fwd(layer):
        def run():
            with torch.no_grad():
                layer(x)
        return run

    def fwd_bwd(layer):
        params = (x_grad, *layer.parameters())
        return lambda: torch.autograd.grad(layer(x_grad), params, g)

    return {
        "DSD": (lambda: torch.matmul(sparse, b), lambda: blocksparse_matmul(values, b, layout, "dsd")),
        "DDS": (lambda: torch.matmul(a, sparse), lambda: blocksparse_matmul(a, values, layout, "dds")),
        "BlockSparseLinear fwd": (fwd(dense_linear), fwd(ours_linear)),
        "BlockSparseLinear fwd+bwd": (fwd_bwd(dense_linear), fwd_bwd(ours_linear)),
    }


def measure(fns: dict, thread_count: int, repeats: int, calls: int) -> dict:
    torch.set_num_threads(thread_count)
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (dense, ours) in fns.items():
            d, o = timed(dense, calls), timed(ours, calls)
            samples[name].append((d, o))
    out = {}
    for name, runs in samples.items():
        row = {}
        for k, clock in enumerate(("cpu", "wall")):
            row[f"dense_{clock}"] = statistics.median(d[k] for d, _ in runs)
            row[f"ours_{clock}"] = statistics.median(o[k] for _, o in runs)
            row[f"speedup_{clock}"] = statistics.median(d[k] / o[k] for d, o in runs)
        out[name] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--size", type=int, default=2048, help="M = N = K (default 2048)")
    p.add_argument("--block", type=int, default=64)
    p.add_argument("--density", type=float, default=0.10)
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats; medians over them (default 7)")
    p.add_argument("--calls", type=int, default=3, help="calls per timing (default 3)")
    p.add_argument("--per-block-threads", action="store_true",
                   help="the previous scheme: no thread split, torch threads each block's GEMM")
    args = p.parse_args(argv)
    if args.per_block_threads:
        from spintui.kernels import threads

        threads.PARALLEL_MIN_WORK = float("inf")
    fns = cases(args.size, args.block, args.density)
    load = os.getloadavg()
    import spintui.kernels

    print(f"spintui.kernels from {Path(spintui.kernels.__file__).parent}")
    print(f"torch {torch.__version__}, fp32 {args.size}^3, density {args.density:g}, block {args.block}, "
          f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{'per-block GEMM threads' if args.per_block_threads else 'thread split over lines'}; "
          f"medians of {args.repeats} interleaved repeats x {args.calls} calls")
    print(f"{'threads':>7} {'case':26} {'dense ms':>9} {'ours ms':>8} {'speedup':>8}   "
          f"{'wall: dense':>11} {'ours':>7} {'speedup':>8}")
    for count in (int(t) for t in args.threads.split(",")):
        for name, r in measure(fns, count, args.repeats, args.calls).items():
            print(f"{count:7} {name:26} {r['dense_cpu'] * 1e3:9.1f} {r['ours_cpu'] * 1e3:8.1f} "
                  f"{r['speedup_cpu']:7.2f}x   {r['dense_wall'] * 1e3:11.1f} {r['ours_wall'] * 1e3:7.1f} "
                  f"{r['speedup_wall']:7.2f}x")
            sys.stdout.flush()
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
