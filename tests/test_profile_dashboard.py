"""The dashboard's profile view through Textual's pilot: a recorded sweep replayed live, and a real sweep process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from spintui.kernels import blocksparse_matmul
from spintui.profiles import kernel_sweep as ks
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest
from spintui.tui.app import Dashboard, PlotView

torch.set_num_threads(1)
SIZE = (120, 40)


def screen_text(app) -> str:
    import io

    from rich.console import Console

    console = Console(width=app.size.width, height=app.size.height, record=True, file=io.StringIO(),
                      color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                       simplify=True))
    return console.export_text()


async def wait_for(pilot, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def sweep_config(**options) -> ks.SweepConfig:
    values = dict(sizes="128", blocks="32,64", densities="0.5,0.25", dtypes="fp32", modes="dsd", device="cpu",
                  threads=1, min_run_time=0.005)
    values.update(options)
    return ks.resolve_config(**values)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A real tiny sweep in which block 64 at 25% density is wrong."""
    def wrong_once(a, b, layout, mode, backend=None):
        out = blocksparse_matmul(a, b, layout, mode, backend=backend)
        return out * 2 if layout.block == 64 and layout.density < 0.4 else out

    runs = tmp_path_factory.mktemp("runs")
    cfg = sweep_config()
    rd = create_run(runs, kind="profile", benchmark=ks.BENCHMARK, name="recorded", config=cfg.to_dict())
    result = ks.run_sweep(rd, kernel=wrong_once)
    assert [c["status"] for c in result.cases] == ["ok", "ok", "ok", "WRONG"]
    return rd, result.cases


def test_profile_view_fills_as_cases_finish(recorded, tmp_path):
    source, cases = recorded
    rd = create_run(tmp_path, kind="profile", benchmark=ks.BENCHMARK, name="live",
                    config=read_manifest(source)["config"])
    run = RunWriter(rd, heartbeat=False)
    run.update_manifest(environment=read_manifest(source)["environment"])

    def finish(n: int) -> None:
        for rec in cases[n - 2:n]:
            run.log("kernel", **rec)
        run.set_progress(step=n, total_steps=len(cases), steps_per_sec=0.5)
        run.update_manifest()
        run.flush()

    async def go():
        from textual.widgets import DataTable

        app = Dashboard([rd], refresh_s=0.05, telemetry_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#kernels", DataTable)
            chart = app.query_one("#speedup", PlotView)
            await wait_for(pilot, lambda: app.frame is not None)
            assert table.row_count == 0 and chart.data.empty_reason == "waiting for the first correct case"
            finish(2)
            await wait_for(pilot, lambda: table.row_count == 2)
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "case 2/4 (50%)" in text and "ETA 0:04" in text, text  # 2 left at 0.5 cases/s
            assert "2/4  50%" in table.border_subtitle
            assert [ln.label for ln in chart.data.lines] == ["ideal", "dense", "block 32"]
            finish(4)
            run.close("finished")
            await wait_for(pilot, lambda: table.row_count == 4 and "finished" in str(table.border_subtitle))
            await pilot.pause(0.2)
            labels = [str(c.label) for c in table.columns.values()]
            assert labels[:5] == ["#", "mode", "M×N×K", "blk", "density"]
            assert {"dense ms", "ours ms", "BSR ms", "TFLOP/s", "speedup", "of ideal", "vs BSR", "MiB", "launch",
                    "check"} <= set(labels)
            check = labels.index("check")
            speedup = labels.index("speedup")
            row = table.get_row_at(3)  # block 64, 25%: wrong
            assert str(row[check]) == "WRONG" and "red" in str(row[check].style)
            assert str(row[speedup]) == "-", "a wrong case never shows a speedup"
            ok_row = table.get_row_at(0)
            assert str(ok_row[check]) == "ok" and str(ok_row[speedup]).endswith("x")
            assert "1 WRONG" in table.border_subtitle and "4/4 100%" in table.border_subtitle
            # one line per block size with the correct cases only, plus the ideal 1/density line
            lines = {ln.label: ln for ln in chart.data.lines}
            assert set(lines) == {"ideal", "dense", "block 32", "block 64"}
            assert len(lines["block 32"].x) == 2 and len(lines["block 64"].x) == 1
            ideal = lines["ideal"]
            assert ideal.y[0] == pytest.approx(ks_symlog(1 / ideal.x[0]))
            text = screen_text(app)
            for fragment in ("Kernels", "Speedup vs density", "ideal 1/density", "block 64", "WRONG",
                             "blocksparse", "finished", "sizes=128", "blocks=32,64"):
                assert fragment in text, fragment
            assert "System" in text or "GPU" in text
            assert any("\u2800" < ch <= "\u28ff" for ch in text), "braille chart drawn"
    asyncio.run(go())


def ks_symlog(v: float) -> float:
    import math

    return math.copysign(math.log10(1 + abs(v)), v)


def test_dashboard_follows_a_sweep_process(tmp_path):
    """`spintui profile blocksparse` in a terminal: the sweep runs as its own process, the view fills."""
    from spintui.tui.cli import start_sweep

    cfg = sweep_config(densities="0.5")
    rd = create_run(tmp_path, kind="profile", benchmark=ks.BENCHMARK, config=cfg.to_dict())
    proc = start_sweep(rd)

    async def go():
        from textual.widgets import DataTable

        app = Dashboard([rd], owned=proc, refresh_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#kernels", DataTable)
            await wait_for(pilot, lambda: table.row_count == 2, timeout=60)
            await wait_for(pilot, lambda: proc.poll() is not None, timeout=30)
            await wait_for(pilot, lambda: "finished" in str(table.border_subtitle))
            assert "case 2/2" in screen_text(app)
            await pilot.press("q")  # the sweep is done: no stop/detach question
            await pilot.pause(0.1)
        return app.outcome

    try:
        assert asyncio.run(go()) == "closed"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.wait(timeout=30) == 0
    assert read_manifest(rd)["status"] == "finished"
    assert "finished: 2 cases" in RunPaths(rd).output_log.read_text()


def test_quit_does_not_ask_once_the_sweep_closed_its_run(recorded):
    """The sweep process may take a moment to exit after writing `finished`: q must not ask to stop it."""
    import subprocess
    import sys

    rd, _ = recorded
    exiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

    async def go():
        from spintui.tui.app import QuitDialog

        app = Dashboard([rd], owned=exiting, refresh_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None)
            await pilot.press("q")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, QuitDialog)
        return app.outcome

    try:
        assert asyncio.run(go()) == "closed"
        assert exiting.poll() is None, "the process was left alone"
    finally:
        exiting.kill()
        exiting.wait()
