"""`spintui profile blocksparse`: time block-sparse kernels against dense, live or headless."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spintui.errors import CommandFailed
from spintui.options import SEED, Range, build, option
from spintui.tui.command_options import (check_new_run_name, compare_baseline, headless_option, json_output_path,
                                         name_option, options_command, runs_dir_option, runs_dir_or_default,
                                         threshold_option)


@dataclass
class BlocksparseOptions:
    sizes: str | None = option(None, "M,N,K triples or N for square, separated by spaces or ';'.",
                               metavar="SIZES", default_text="GPU 4096 8192; CPU 512 1024")
    blocks: str | None = option(None, "Block sizes, from 16, 32, 64, 128.", metavar="B,...",
                                default_text="GPU 32,64,128; CPU 32,64")
    densities: str | None = option(None, "Fractions of blocks stored, in (0, 1], e.g. 0.5,0.1 or 50%,10%.",
                                   metavar="D,...", default_text="50%,25%,10%,5%")
    dtypes: str | None = option(None, "Data types, from fp32, fp16, bf16, fp64.", metavar="DTYPE,...",
                                default_text="GPU bf16; CPU fp32")
    ops: tuple[Literal["matmul", "softmax", "attention"], ...] = option(
        ("matmul",), "What to time: the products (each --modes), softmax of an M x N layout's blocks, attention "
        "over M = N tokens with head dim K; each against its dense peer (attention: SDPA, and on a GPU "
        "compiled FlexAttention with the same block mask).")
    modes: str | None = option(None, "Products, from sdd, dsd, dds.", metavar="MODE,...",
                               default_text="sdd,dsd,dds")
    layout: Literal["random", "banded", "strided"] = option("random", "Block pattern.")
    backward: bool = option(False, "Time forward + backward (autograd) too.")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "Where the kernels run.")
    threads: int | None = option(None, "CPU threads for every peer, timed by the thread's CPU time.",
                                 range=Range(1, 1024), default_text="1")
    seed: int = option(0, "Seed of layouts and operands.", range=SEED)
    quick: bool = option(False, "A small grid (under a minute on a 2-core CPU).")
    headless: bool = headless_option("No dashboard: a live table (or a line per case).")
    json: Path | None = option(None, "Also write the profile as JSON (schema_version 1) to this file.",
                               metavar="FILE")
    compare: str | None = option(None, "Baseline profile run (path, name or 'latest'): mark cases faster or "
                                 "slower; headless exits 1 on regressions.", metavar="RUN")
    threshold: float | None = threshold_option("1.25, measured on a shared 2-core CPU")
    name: str | None = name_option("date_time_blocksparse")
    runs_dir: Path | None = runs_dir_option()


def profile_blocksparse(given: dict) -> None:
    """Time block-sparse matmul, softmax and attention kernels against their dense peers (each case checked first)."""
    from spintui.profiles import sweep_config
    from spintui.profiles.store import create_run

    opts = build(BlocksparseOptions, given)
    directory = runs_dir_or_default(opts.runs_dir)
    baseline = compare_baseline(opts.compare, directory, sweep_config.BENCHMARK, "a blocksparse profile")
    check_new_run_name(opts.name, directory)
    json_path = json_output_path(opts.json)
    cfg = sweep_config.resolve_config(
        sizes=opts.sizes, blocks=opts.blocks, densities=opts.densities, dtypes=opts.dtypes, modes=opts.modes,
        ops=opts.ops,
        layout=opts.layout, backward=opts.backward, device=opts.device, threads=opts.threads, seed=opts.seed,
        quick=opts.quick, json_path=None if json_path is None else str(json_path),
        compare=None if baseline is None else str(baseline.resolve()), threshold=opts.threshold)
    run_dir = create_run(directory, kind="profile", name=opts.name, benchmark=sweep_config.BENCHMARK,
                         seed=opts.seed, config=cfg.to_dict(), argv=["spintui", *sys.argv[1:]])
    if not opts.headless and sys.stdout.isatty() and sys.stdin.isatty():
        from spintui.tui.app import run_dashboard
        from spintui.profiles.processes import start_sweep

        run_dashboard([run_dir], owned=start_sweep(run_dir))
        return
    from spintui.tui.profile_report import report_sweep
    from spintui.tui.train_command import failure_reason

    result = report_sweep(run_dir)
    if result.status == "failed":
        raise CommandFailed(f"profile failed: {failure_reason(run_dir)}")
    if result.wrong or result.errors or result.regressions:
        problems = [f"{n} {what}" for n, what in ((result.wrong, "WRONG"), (result.errors, "failed"),
                                                  (result.regressions, "regressions")) if n]
        raise CommandFailed(f"profile {run_dir.name}: {', '.join(problems)}")


COMMANDS = {
    "blocksparse": options_command(profile_blocksparse, BlocksparseOptions, doc=profile_blocksparse.__doc__,
                                   name="profile_blocksparse"),
}
