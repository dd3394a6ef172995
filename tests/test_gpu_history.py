"""A run's GPU history: NVML samples logged by the producer at 1 Hz, read back and plotted.

No GPU here: samples in NVML's shape (tests/data/gpu_samples_h200.json) go through the sampler's
interface (`GpuLogger(open_sampler=...)`), which is where the NVML calls are; the run store, the
reader, the frames and the dashboard are the real ones. benchmarks/gpu_trace_checks.sh runs the
real thing on a GPU.
"""

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

from spintui.profiles import gpu
from spintui.profiles.gpu_history import MAX_POINTS, GpuHistory, RecordedGpuSampler
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run, read_manifest, write_json_atomic
from spintui.tui.gpu_panel import history_text

SAMPLES = Path(__file__).parent / "data" / "gpu_samples_h200.json"
SIZE = (120, 40)


def record_run(tmp_path, samples: int = 8, own_memory=None) -> Path:
    """A finished training run whose GpuLogger logged `samples` recorded samples."""
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    sampler = RecordedGpuSampler(SAMPLES)
    logger = gpu.GpuLogger(run, interval=0.01, open_sampler=sampler.opener(), own_memory=own_memory).start()
    deadline = time.monotonic() + 10
    while logger.samples < samples and time.monotonic() < deadline:
        time.sleep(0.01)
    logger.stop()
    assert sampler.closed
    run.scalar("LossQ", 1.0, 1)
    run.close()
    return rd


def test_recorded_samples_go_through_the_logger_into_the_run(tmp_path):
    rd = record_run(tmp_path, samples=6, own_memory=lambda: 5 * 2**30)
    recs = [r for r in RunReader(rd).poll().records if r["kind"] == "gpu"]
    assert len(recs) >= 6
    first, second = recs[0]["gpus"][0], recs[1]["gpus"][0]
    assert (first["utilization"], second["utilization"]) == (0, 34)  # the recording's order
    assert first["name"] == "NVIDIA H200" and first["memory_total"] == 150754820096
    for key in ("memory_used", "power_w", "temperature_c", "sm_clock_mhz", "trainer_memory"):
        assert second[key] is not None
    assert second["processes"][0]["pid"] == os.getpid()  # the trainer is the logging process
    assert recs[0]["own_memory"] == 5 * 2**30 and recs[0]["trainer_match"] == "matched"
    assert recs[1]["time"] > recs[0]["time"]


def test_without_nvml_the_run_records_one_event_saying_why(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac")
    run = RunWriter(rd, heartbeat=False)
    logger = gpu.GpuLogger(run, open_sampler=lambda: (None, "no NVIDIA driver (NVML library not found)")).start()
    logger.stop()
    run.close()
    records = RunReader(rd).poll().records
    assert [r["message"] for r in records if r["kind"] == "event"] == [
        "GPU telemetry off: no NVIDIA driver (NVML library not found)"]
    assert not [r for r in records if r["kind"] == "gpu"]


def test_history_series_views_and_bounded_memory():
    records = json.loads(SAMPLES.read_text())
    h = GpuHistory()
    for rec in records:
        h.add(rec)
    view = h.view(points=4)
    assert view["samples"] == len(records) and view["span_s"] == len(records) - 1
    util = view["gpus"][0]["utilization"]
    assert len(util) == 4 and util[0] == (0 + 34 + 88) / 3 and util[-1] == (91 + 90 + 12) / 3
    assert GpuHistory.from_state(json.loads(json.dumps(h.state()))).view(points=4) == view
    for i in range(MAX_POINTS + 1):
        h.add({**records[3], "time": 2e9 + i})
    assert len(h) <= MAX_POINTS and h.count == len(records) + MAX_POINTS + 1


def test_the_panel_text_plots_the_whole_history():
    h = GpuHistory()
    for rec in json.loads(SAMPLES.read_text()):
        h.add(rec)
    text = str(history_text(h.view(), 70))
    assert "GPU0 NVIDIA H200" in text and "12%" in text and "/700 W" in text and "345 MHz" in text
    util_line = next(line for line in text.splitlines() if line.startswith(" util"))
    assert util_line.rstrip().endswith("▁▃█████████▁")  # all 12 samples, on a 0-100% scale
    assert "▶    4242" in text and "12 samples over" in text
    assert "no GPU samples" in str(history_text({}, 70))


def test_the_dashboard_plots_a_finished_run_and_its_copy_from_the_run(tmp_path, screen_text, wait_for):
    from spintui.tui.train_dashboard import TrainDashboard

    rd = record_run(tmp_path / "a")
    copy = tmp_path / "laptop" / rd.name
    shutil.copytree(rd, copy)
    manifest = read_manifest(copy)
    write_json_atomic(copy / "run.json", {**manifest, "host": "gpu-node-7"})

    async def go(run_dir, title):
        app = TrainDashboard([run_dir], refresh_s=0.05, telemetry_s=0.05)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one("#gpu")
            await wait_for(pilot, lambda: panel.border_title == title)
            await pilot.pause(0.3)  # this host's own sampling must not replace the run's history
            text = screen_text(app)
            assert panel.border_title == title
            assert "GPU0 NVIDIA H200" in text and "samples over" in text and "▶" in text
    asyncio.run(go(rd, "GPU (this run's history)"))
    asyncio.run(go(copy, "GPU (logged on gpu-node-7)"))


def test_a_narrow_panel_still_shows_the_whole_history():
    from spintui.tui.gpu_panel import spark

    line = spark([None] * 50 + list(range(50)), 10, 0, 49)
    assert len(line) == 10 and line[:5] == "     " and line[5] == "▁" and line[-1] == "█"
