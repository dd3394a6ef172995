"""The dashboard's profile view through Textual's pilot: a recorded sweep replayed live, and a real sweep process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from spintui.kernels import blocksparse_matmul
from spintui.profiles import kernel_sweep as ks, sweep_config as sc
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run, read_manifest
from spintui.tui.profile_dashboard import ProfileDashboard
from spintui.tui.screens import QuitDialog
from spintui.tui.widgets import PlotView

torch.set_num_threads(1)
SIZE = (120, 40)


def sweep_config(**options) -> sc.SweepConfig:
    values = dict(sizes="128", blocks="32,64", densities="0.5,0.25", dtypes="fp32", modes="dsd", device="cpu",
                  threads=1, min_run_time=0.005)
    values.update(options)
    return sc.resolve_config(**values)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A real tiny sweep in which block 64 at 25% density is wrong."""
    def wrong_once(a, b, layout, mode, backend=None):
        out = blocksparse_matmul(a, b, layout, mode, backend=backend)
        return out * 2 if layout.block == 64 and layout.density < 0.4 else out

    runs = tmp_path_factory.mktemp("runs")
    cfg = sweep_config()
    rd = create_run(runs, kind="profile", benchmark=sc.BENCHMARK, name="recorded", config=cfg.to_dict())
    result = ks.run_sweep(rd, kernel=wrong_once)
    assert [c["status"] for c in result.cases] == ["ok", "ok", "ok", "WRONG"]
    return rd, result.cases


def test_profile_view_fills_as_cases_finish(recorded, tmp_path, screen_text, wait_for):
    source, cases = recorded
    rd = create_run(tmp_path, kind="profile", benchmark=sc.BENCHMARK, name="live",
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

        app = ProfileDashboard([rd], refresh_s=0.05, telemetry_s=0.1)
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
            assert labels[:5] == ["#", "op", "M×N×K", "blk", "density"]
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


def test_other_kernel_records_fill_a_generic_table(tmp_path, screen_text, wait_for):
    rd = create_run(tmp_path, kind="profile", benchmark="blocksparse")
    run = RunWriter(rd, heartbeat=False)
    run.log("kernel", mode="dsd", size=1024, block=32, density=0.1, median_ms=1.25, speedup=3.2)
    run.flush()

    async def go():
        from textual.widgets import DataTable

        app = ProfileDashboard([rd], refresh_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#kernels", DataTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            run.log("kernel", mode="sdd", size=1024, block=64, density=0.25, median_ms=2.5, speedup=1.5)
            run.flush()
            await wait_for(pilot, lambda: table.row_count == 2)
            assert [str(c.label) for c in table.columns.values()] == ["mode", "size", "block", "density",
                                                                      "median_ms", "speedup"]
            assert table.get_row_at(1)[0] == "sdd"
            assert "Kernels" in screen_text(app)
    asyncio.run(go())
    run.close()


def ks_symlog(v: float) -> float:
    import math

    return math.copysign(math.log10(1 + abs(v)), v)


def test_dashboard_follows_a_sweep_process(tmp_path, screen_text, wait_for):
    """`spintui profile blocksparse` in a terminal: the sweep runs as its own process, the view fills."""
    from spintui.profiles.processes import start_sweep

    cfg = sweep_config(densities="0.5")
    rd = create_run(tmp_path, kind="profile", benchmark=sc.BENCHMARK, config=cfg.to_dict())
    proc = start_sweep(rd)

    async def go():
        from textual.widgets import DataTable

        app = ProfileDashboard([rd], owned=proc, refresh_s=0.1)
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


def test_quit_does_not_ask_once_the_sweep_closed_its_run(recorded, stand_in_producer, wait_for):
    """The sweep process may take a moment to exit after writing `finished`: q must not ask to stop it."""
    rd, _ = recorded

    async def go():
        app = ProfileDashboard([rd], owned=stand_in_producer, refresh_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.frame is not None)
            await pilot.press("q")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, QuitDialog)
        return app.outcome

    assert asyncio.run(go()) == "closed"
    assert stand_in_producer.poll() is None, "the process was left alone"
