"""Headless `spintui profile blocksparse`: the sweep in this process, shown with Rich.

In a terminal a live table (the latest rows) fills as cases finish, under a progress bar with ETA;
otherwise (a pipe, CI) one line per case is printed as it finishes. Either way the full table and a
summary follow at the end. WRONG cases are red, and never show a time.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from spintui.profiles.kernel_sweep import SweepResult, run_sweep
from spintui.profiles.store import read_manifest
from spintui.profiles.sweep_config import SweepConfig
from spintui.tui import profile_data as pd
from spintui.tui.plot_data import format_duration


def case_table(records: list[dict], title: str | None = None, first_index: int = 1,
               config: dict | None = None) -> Table:
    cols = pd.columns(records, config)
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for _, label, right in cols:
        table.add_column(label, justify="right" if right else "left", no_wrap=True)
    for i, rec in enumerate(records):
        table.add_row(*(Text(pd.cell(rec, key, first_index + i), style=pd.cell_style(rec, key))
                        for key, _, _ in cols))
    return table


def case_line(rec: dict, done: int, total: int, eta: float | None) -> Text:
    """One finished case as a line, for logs: '[ 3/36] dsd 256³ blk 32 50% fp32  ours 0.12 ms ...'."""
    head = (f"[{done:>{len(str(total))}}/{total}] {pd.op_text(rec)} {pd.size_text(rec)} blk {rec['block']} "
            f"{pd.density_text(rec)} {rec['dtype']}")
    text = Text(head + "  ")
    status = rec.get("status")
    if status != "ok":
        text.append(status, style=pd.STATUS_STYLES.get(status, "red"))
        text.append(f"  {rec.get('error') or ''}", style="red")
    else:
        text.append(f"ours {pd.cell(rec, 's_ours')} ms  dense {pd.cell(rec, 's_dense')} ms  "
                    f"speedup {pd.cell(rec, 'speedup')}  {pd.cell(rec, 'fraction_of_ideal')} of ideal  "
                    f"{pd.cell(rec, 'tflops_effective')} TFLOP/s")
        if rec.get("s_torch_bsr") is not None:
            text.append(f"  vs BSR {pd.cell(rec, 'speedup_vs_torch_bsr')}")
        if rec.get("s_flex") is not None:
            text.append(f"  flex {pd.cell(rec, 's_flex')} ms")
        if rec.get("launch_bound"):
            text.append("  launch-bound", style="yellow")
    if rec.get("compare") is not None:
        text.append(f"  [{pd.cell(rec, 'compare')}]", style=pd.VERDICT_STYLES.get(rec["compare"], ""))
    if eta is not None and done < total:
        text.append(f"  ETA {format_duration(eta)}", style="dim")
    return text


def describe(cfg: SweepConfig, env: dict | None = None) -> str:
    where = cfg.device if cfg.device == "cuda" else f"cpu, {cfg.threads} thread(s)"
    sizes = " ".join(f"{m}" if m == n == k else f"{m},{n},{k}" for m, n, k in cfg.sizes)
    return (f"{where}; sizes {sizes}; blocks {','.join(map(str, cfg.blocks))}; densities "
            f"{','.join(f'{d:g}' for d in cfg.densities)}; {','.join(cfg.dtypes)}; {pd.ops_text(cfg.ops, cfg.modes)}; "
            f"{cfg.layout} layout{'; forward+backward' if cfg.backward else ''}")


def report_sweep(run_dir: Path, console: Console | None = None, kernel=None) -> SweepResult:
    """Run the sweep of `run_dir` here, showing it as it goes; returns the sweep's result."""
    if console is None:
        console = Console()
        if not console.is_terminal and not os.environ.get("COLUMNS"):
            console = Console(width=200)  # a log or CI: keep each case on one line and the table whole
    cfg = SweepConfig.from_dict(read_manifest(run_dir)["config"])
    console.print(f"profile [bold]{run_dir.name}[/] in {run_dir.parent}")
    console.print(f"[dim]{describe(cfg)}[/]")
    if cfg.compare:
        console.print(f"[dim]comparing with {Path(cfg.compare).name} (noise threshold {cfg.threshold:.0%})[/]")
    records: list[dict] = []
    terminal = console.is_terminal
    progress = Progress(TextColumn("cases"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA {task.fields[eta]}"), TextColumn("{task.fields[bad]}", style="red"),
                        console=console, auto_refresh=False)
    task = progress.add_task("sweep", total=None, eta="-", bad="")
    live = Live(console=console, refresh_per_second=4, transient=True) if terminal else None

    def live_view():
        keep = max(3, console.size.height - 8)
        shown = records[-keep:]
        return Group(case_table(shown, first_index=len(records) - len(shown) + 1, config=cfg.to_dict()), progress)

    def on_start(cases, notes):
        for note in notes:
            console.print(f"[dim]{note}[/]")
        progress.update(task, total=len(cases))
        if live is not None:
            live.start()
            live.update(live_view(), refresh=True)

    def on_case(rec, done, total, eta):
        records.append(rec)
        c = pd.counts(records)
        bad = ", ".join(f"{c[k]} {k}" for k in ("WRONG", "error") if c[k])
        progress.update(task, completed=done, eta=format_duration(eta) if done < total else "0:00", bad=bad)
        if live is not None:
            live.update(live_view(), refresh=True)
        else:
            console.print(case_line(rec, done, total, eta), soft_wrap=True)  # one line per case in a log

    try:
        result = run_sweep(run_dir, on_case=on_case, kernel=kernel, on_start=on_start)
    finally:
        if live is not None and live.is_started:
            live.stop()
    console.print(case_table(result.cases, title=f"{run_dir.name}: {describe(cfg)}", config=cfg.to_dict()))
    console.print(pd.summary_line(result.cases))
    if result.compare is not None:
        counts = result.compare["counts"]
        shown = ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n)
        colour = "red" if result.regressions else "green"
        console.print(f"[{colour}]vs {result.compare['baseline']} (threshold {result.compare['threshold']:.0%}): "
                      f"{shown or 'no cases'}[/]")
    return result
