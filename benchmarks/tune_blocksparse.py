"""Sweep the Triton kernels' meta-parameters on this GPU and write a tuning.json entry for it.

    python benchmarks/tune_blocksparse.py --out kernels/tuning.json      # merge this GPU's best into the table

For each mode (dsd, dds) and block size, one case (default 8192^3, density 10%, bf16) is run with
every combination of the free tile (BLOCK_N for dsd, BLOCK_M for dds), num_warps and num_stages.
Each configuration is checked against the dense product before it is timed (triton.testing.do_bench
median, L2 flushed); configurations that fail to compile (e.g. out of shared memory) are skipped.
Prints every time and each case's best with its speedup over dense cuBLAS, and writes the table
after every case, so an interrupted sweep keeps what it finished. tuning.json is keyed by
torch.cuda.get_device_name(); `meta_parameters` picks the GPU's own entry before "default".

`--device cpu` runs the same loop through Triton's interpreter at a tiny size (set
TRITON_INTERPRET=1): a smoke test of this script, not a tuning.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import torch

TILE_KEY = {"dsd": "BLOCK_N", "dds": "BLOCK_M"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="dsd,dds")
    p.add_argument("--blocks", default="64,128,32")
    p.add_argument("--size", type=int, default=8192, help="M = N = K (default 8192)")
    p.add_argument("--density", type=float, default=0.10)
    p.add_argument("--tiles", default="64,128,256")
    p.add_argument("--warps", default="4,8")
    p.add_argument("--stages", default="2,3,4")
    p.add_argument("--min-run-time", type=float, default=0.1, help="seconds of timing per configuration")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", type=Path, default=None, help="tuning.json to merge this GPU's best entries into")
    args = p.parse_args(argv)
    from spintui.kernels import BLOCK_SIZES

    modes = args.modes.split(",")
    if not set(modes) <= set(TILE_KEY):
        p.error(f"--modes takes {', '.join(TILE_KEY)} (sdd has no free tile to sweep), got {args.modes!r}")
    try:
        blocks, tiles, warps, stages = ([int(v) for v in text.split(",")]
                                        for text in (args.blocks, args.tiles, args.warps, args.stages))
    except ValueError:
        p.error("--blocks, --tiles, --warps and --stages take comma-separated integers, e.g. 64,128")
    if not set(blocks) <= set(BLOCK_SIZES):
        p.error(f"--blocks takes {', '.join(map(str, BLOCK_SIZES))}, got {args.blocks!r}")

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is visible (use --device cpu with TRITON_INTERPRET=1 "
              "for a smoke test)", file=sys.stderr)
        return 2
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        print("error: --device cpu needs TRITON_INTERPRET=1", file=sys.stderr)
        return 2

    from spintui.kernels import blocksparse_matmul, triton_kernels
    from spintui.kernels.bench import _relative_error, _time_cpu, _time_cuda, _tolerance, case_operands

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "interpreter"

    def timed(fn) -> float:
        return _time_cuda(fn, args.min_run_time) if device.type == "cuda" else _time_cpu(fn, 1, args.min_run_time)

    table = json.loads((args.out if args.out and args.out.exists() else triton_kernels.TUNING_FILE).read_text())
    entry = table.setdefault(gpu, {})
    n = args.size
    print(f"{gpu}: {dtype}, {n}^3, density {args.density:.0%}; times are medians in ms", flush=True)
    for mode in modes:
        tile_key = TILE_KEY[mode]
        for block in blocks:
            layout, a, b, dense_a, dense_b = case_operands(mode, n, n, n, block, args.density, dtype, device)
            reference = dense_a.float() @ dense_b.float()
            s_dense = timed(lambda: dense_a @ dense_b)
            tol = _tolerance(dtype, device)
            results = []
            for tile, n_warps, n_stages in itertools.product(tiles, warps, stages):
                meta = {tile_key: tile, "num_warps": n_warps, "num_stages": n_stages}
                triton_kernels.OVERRIDES[mode] = meta
                label = f"{mode} b{block} {tile_key}={tile} warps={n_warps} stages={n_stages}"
                try:
                    error = _relative_error(blocksparse_matmul(a, b, layout, mode, backend="triton"), reference)
                    if not error <= tol:
                        print(f"  {label}: WRONG (relative error {error:.1e})", flush=True)
                        continue
                    s = timed(lambda: blocksparse_matmul(a, b, layout, mode, backend="triton"))
                except Exception as exc:  # e.g. out of shared memory for this tile and stage count
                    print(f"  {label}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})", flush=True)
                    continue
                finally:
                    triton_kernels.OVERRIDES.pop(mode, None)
                results.append((s, meta))
                print(f"  {label}: {s * 1e3:.3f} ms, {s_dense / s:.2f}x dense", flush=True)
            if not results:
                print(f"{mode} b{block}: no configuration ran", flush=True)
                continue
            s_best, best = min(results, key=lambda r: r[0])
            default = triton_kernels.meta_parameters(mode, block, dtype, device)
            s_default = next((s for s, m in results if m == {k: default.get(k) for k in m}), None)
            entry[f"{mode}/b{block}/{str(dtype).removeprefix('torch.')}"] = best  # tiles sized for this dtype
            print(f"{mode} b{block}: best {best} {s_best * 1e3:.3f} ms = {s_dense / s_best:.2f}x dense "
                  f"({s_dense / s_best * layout.density:.2f} of ideal); dense {s_dense * 1e3:.3f} ms"
                  + (f"; previous entry {s_dense / s_default:.2f}x" if s_default else ""), flush=True)
            if args.out:
                args.out.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
