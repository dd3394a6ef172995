"""NVML telemetry: absent, failing, fields not supported, trainer matching; the psutil fallback.

NVML is replaced in some tests by patching single pynvml functions to raise or return what a board
reports: that exercises the error handling a real driver triggers, which this machine (no GPU)
cannot. On a machine with a GPU the first test checks real NVML instead.
"""

import os
import subprocess
import sys
from types import SimpleNamespace

import pynvml
import pytest

from spintui.profiles import gpu
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run


def test_real_nvml_gives_a_sampler_or_a_one_line_reason():
    sampler, reason = gpu.open_gpu_sampler()
    if sampler is None:
        assert reason and "\n" not in reason
        assert gpu.driver_version() is None
    else:
        try:
            sample = sampler.sample(os.getpid())
            assert sample.gpus and sample.gpus[0].memory_total
            assert gpu.driver_version()
        finally:
            sampler.close()


def test_nvml_binding_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    sampler, reason = gpu.open_gpu_sampler()
    assert sampler is None and reason == "nvidia-ml-py (pynvml) is not installed"


def test_nvml_init_raising(monkeypatch):
    def fail():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    assert gpu.open_gpu_sampler() == (None, "no NVIDIA driver (NVML library not found)")

    def odd():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    monkeypatch.setattr(pynvml, "nvmlInit", odd)
    sampler, reason = gpu.open_gpu_sampler()
    assert sampler is None and reason.startswith("NVML failed to start: Unknown Error")


def test_driver_version_never_raises(monkeypatch):
    gpu.driver_version.cache_clear()
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        assert gpu.driver_version() is None
    finally:
        gpu.driver_version.cache_clear()


def not_supported(*args):
    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


@pytest.fixture
def one_gpu(monkeypatch):
    """pynvml answering like one board whose power reading and clocks are not supported."""
    state = {"procs": [SimpleNamespace(pid=os.getpid(), usedGpuMemory=3 * 2**30),
                       SimpleNamespace(pid=os.getpid() + 10_000_000, usedGpuMemory=None)]}
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 1)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: f"handle{i}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "NVIDIA Test Board")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lambda h: SimpleNamespace(gpu=37, memory=5))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(used=6 * 2**30, total=80 * 2**30))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", not_supported)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetEnforcedPowerLimit", not_supported)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTemperature", lambda h, s: 61)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetClockInfo", not_supported)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetComputeRunningProcesses", lambda h: state["procs"])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetGraphicsRunningProcesses", lambda h: [])
    return state


def test_not_supported_fields_are_none_and_shown_na(one_gpu):
    sampler, reason = gpu.open_gpu_sampler()
    assert reason == ""
    sample = sampler.sample(trainer_pid=os.getpid())
    g = sample.gpus[0]
    assert (g.utilization, g.temperature_c, g.memory_total) == (37, 61, 80 * 2**30)
    assert g.power_w is None and g.sm_clock_mhz is None
    assert sample.trainer_match == "matched"
    trainer = [p for p in g.processes if p.is_trainer]
    assert [p.pid for p in trainer] == [os.getpid()] and trainer[0].used_bytes == 3 * 2**30
    assert [p.used_bytes for p in g.processes if not p.is_trainer] == [None]

    from spintui.tui.widgets import gpu_text

    text = gpu_text(sample, {}, 60).plain
    assert "NVIDIA Test Board" in text and "n/a W" in text and "SM n/a" in text
    assert "▶" in text and "trainer" in text and "37%" in text


def test_trainer_in_a_container_cannot_be_matched(one_gpu):
    # NVML lists host PIDs that do not exist in this PID namespace: say so instead of guessing.
    one_gpu["procs"] = [SimpleNamespace(pid=4_000_000, usedGpuMemory=2**30)]
    sampler, _ = gpu.open_gpu_sampler()
    sample = sampler.sample(trainer_pid=os.getpid())
    assert sample.trainer_match == "cannot match: NVML reports host PIDs (container)"
    assert not any(p.is_trainer for p in sample.gpus[0].processes)
    assert sampler.sample(trainer_pid=os.getpid(), trainer_host="elsewhere").trainer_match == \
        "cannot match: trainer runs on elsewhere"


def test_nvml_dying_mid_run_raises_one_line(one_gpu, monkeypatch):
    sampler, _ = gpu.open_gpu_sampler()
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo",
                        lambda h: (_ for _ in ()).throw(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)))
    with pytest.raises(gpu.TelemetryError, match="NVML failed: GPU is lost"):
        sampler.sample()


def test_system_sampler_reads_the_trainer_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        sampler = gpu.SystemSampler()
        sample = sampler.sample(child.pid)
        assert 0 <= sample.cpu_percent <= 100 * sample.cpu_count
        assert 0 < sample.ram_used < sample.ram_total
        assert sample.trainer_rss and sample.trainer_rss > 1_000_000, sample
        child.kill()
        child.wait()
        assert sampler.sample(child.pid).trainer_note == "trainer process has exited"
    finally:
        child.kill()


def test_gpu_logger_writes_samples_into_the_run(one_gpu, tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac")
    run = RunWriter(rd, heartbeat=False)
    logger = gpu.GpuLogger(run, interval=0.02).start()
    import time

    time.sleep(0.2)
    logger.stop()
    run.close()
    records = RunReader(rd).poll().records
    samples = [r for r in records if r["kind"] == "gpu"]
    assert samples and samples[0]["gpus"][0]["utilization"] == 37
    assert samples[0]["trainer_match"] == "matched"


def test_gpu_logger_without_nvml_logs_why(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    rd = create_run(tmp_path, kind="train", algo="sac")
    run = RunWriter(rd, heartbeat=False)
    gpu.GpuLogger(run).start().stop()
    run.close()
    events = [r["message"] for r in RunReader(rd).poll().records if r["kind"] == "event"]
    assert events == ["GPU telemetry off: nvidia-ml-py (pynvml) is not installed"]
