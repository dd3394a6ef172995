"""Telemetry: NVIDIA GPUs through NVML (nvidia-ml-py, imported as `pynvml`), else the host's CPU and RAM.

`open_gpu_sampler()` gives an `NvmlSampler` or, when there is no NVIDIA GPU, no NVML library, or
NVML fails, None and a one-line reason, so a viewer can show the System panel with that reason.
Fields a board does not support (power, clocks, per-process memory under some drivers) come back
as None and are shown as "n/a"; nothing here raises into the caller once a sampler is open, except
`NvmlSampler.sample()`, which raises `TelemetryError` with a one-line reason when NVML itself dies.

Costs measured on an H200: nvmlInit ~9 ms, utilisation/power/temperature ~1 us each, memory ~6 us,
the running-process list ~16 us, so sampling every GPU at 1-2 Hz from a thread is free.

Imports neither torch nor Textual: trainers may use `GpuLogger`, viewers the samplers.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass, field

from spintui.profiles.provenance import host_name


class TelemetryError(Exception):
    """NVML is missing or failed; the message is one line, fit to show to the user."""


@dataclass
class GpuProcess:
    pid: int
    used_bytes: int | None
    name: str = ""
    is_trainer: bool = False


@dataclass
class GpuInfo:
    index: int
    name: str
    utilization: int | None = None  # percent
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temperature_c: int | None = None
    sm_clock_mhz: int | None = None
    processes: list[GpuProcess] = field(default_factory=list)


@dataclass
class GpuSample:
    time: float
    gpus: list[GpuInfo]
    trainer_match: str = ""  # "" when no trainer is given; else how the trainer's process was found


@dataclass
class SystemSample:
    time: float
    cpu_percent: float
    cpu_count: int
    ram_used: int
    ram_total: int
    trainer_pid: int | None = None
    trainer_cpu_percent: float | None = None
    trainer_rss: int | None = None
    trainer_note: str = ""


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _nvml():
    try:
        import pynvml
    except ImportError:
        raise TelemetryError("nvidia-ml-py (pynvml) is not installed") from None
    return pynvml


def _optional(fn, *args):
    """A field a board may not support: None instead of an error (NotSupported, NoPermission...)."""
    pynvml = _nvml()
    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        if isinstance(exc, (pynvml.NVMLError_GpuIsLost, pynvml.NVMLError_Uninitialized,
                            pynvml.NVMLError_DriverNotLoaded)):
            raise TelemetryError(f"NVML failed: {_reason(exc)}") from None
        return None


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlSampler:
    """Reads every NVIDIA GPU's state through NVML. Construct with `open_gpu_sampler()`."""

    def __init__(self):
        pynvml = _nvml()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            if isinstance(exc, pynvml.NVMLError_LibraryNotFound):
                raise TelemetryError("no NVIDIA driver (NVML library not found)") from None
            if isinstance(exc, pynvml.NVMLError_DriverNotLoaded):
                raise TelemetryError("no NVIDIA GPU (driver not loaded)") from None
            raise TelemetryError(f"NVML failed to start: {_reason(exc)}") from None
        except OSError as exc:
            raise TelemetryError(f"NVML failed to start: {_reason(exc)}") from None
        self._pynvml = pynvml
        self._closed = False
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                raise TelemetryError("NVML sees no GPU")
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._names = [_text(_optional(pynvml.nvmlDeviceGetName, h) or "GPU") for h in self._handles]
        except pynvml.NVMLError as exc:
            self.close()
            raise TelemetryError(f"NVML failed: {_reason(exc)}") from None
        except TelemetryError:
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._pynvml.nvmlShutdown()
            except Exception:
                pass

    def sample(self, trainer_pid: int | None = None, trainer_host: str | None = None) -> GpuSample:
        """One reading of every GPU; marks the trainer's process when it can be matched."""
        nv = self._pynvml
        gpus = []
        try:
            for index, (handle, name) in enumerate(zip(self._handles, self._names)):
                util = _optional(nv.nvmlDeviceGetUtilizationRates, handle)
                mem = _optional(nv.nvmlDeviceGetMemoryInfo, handle)
                power = _optional(nv.nvmlDeviceGetPowerUsage, handle)
                limit = _optional(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
                info = GpuInfo(
                    index=index,
                    name=name,
                    utilization=None if util is None else int(util.gpu),
                    memory_used=None if mem is None else int(mem.used),
                    memory_total=None if mem is None else int(mem.total),
                    power_w=None if power is None else power / 1000.0,
                    power_limit_w=None if limit is None else limit / 1000.0,
                    temperature_c=_optional(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
                    sm_clock_mhz=_optional(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
                )
                seen = {}
                for fn in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
                    for proc in _optional(fn, handle) or []:
                        used = getattr(proc, "usedGpuMemory", None)
                        pid = int(proc.pid)
                        prev = seen.get(pid)
                        if prev is None or (used or 0) > (prev.used_bytes or 0):
                            seen[pid] = GpuProcess(pid, None if used is None else int(used))
                info.processes = sorted(seen.values(), key=lambda p: -(p.used_bytes or 0))
                gpus.append(info)
        except nv.NVMLError as exc:
            raise TelemetryError(f"NVML failed: {_reason(exc)}") from None
        sample = GpuSample(time.time(), gpus)
        if trainer_pid is not None:
            sample.trainer_match = match_trainer(sample, trainer_pid, trainer_host)
        _name_processes(sample)
        return sample


def match_trainer(sample: GpuSample, trainer_pid: int, trainer_host: str | None = None) -> str:
    """Mark the trainer's GPU process; returns a short note on how (or why not) it matched.

    NVML reports PIDs of the host's PID namespace. In a container those differ from the PIDs this
    process sees, so a trainer pid that is absent while none of NVML's PIDs exist here means the two
    cannot be matched, not that the trainer does not use the GPU.
    """
    if trainer_host and trainer_host != host_name():
        return f"cannot match: trainer runs on {trainer_host}"
    procs = [p for g in sample.gpus for p in g.processes]
    found = False
    for p in procs:
        if p.pid == trainer_pid:
            p.is_trainer = True
            found = True
    if found:
        return "matched"
    if procs and not any(_pid_visible(p.pid) for p in procs):
        return "cannot match: NVML reports host PIDs (container)"
    return "trainer not on a GPU"


def _pid_visible(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") if os.path.isdir("/proc") else True


def _name_processes(sample: GpuSample) -> None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return
    for g in sample.gpus:
        for p in g.processes:
            try:
                p.name = psutil.Process(p.pid).name()
            except Exception:
                p.name = ""


def open_gpu_sampler() -> tuple[NvmlSampler | None, str]:
    """(sampler, "") when NVML works, else (None, one-line reason)."""
    try:
        return NvmlSampler(), ""
    except TelemetryError as exc:
        return None, str(exc)
    except Exception as exc:  # a broken binding must not take the viewer down
        return None, f"NVML failed: {type(exc).__name__}: {_reason(exc)}"


@functools.lru_cache(maxsize=1)
def driver_version() -> str | None:
    """The NVIDIA driver version, or None; cheap after the first call and never raises."""
    try:
        pynvml = _nvml()
        pynvml.nvmlInit()
        try:
            return _text(pynvml.nvmlSystemGetDriverVersion())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


class SystemSampler:
    """CPU and RAM of this host and of the trainer process (psutil); used when there is no GPU."""

    def __init__(self):
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(None)  # the first call only sets the reference point
        self._proc = None
        self._proc_pid = None

    def sample(self, trainer_pid: int | None = None, trainer_host: str | None = None) -> SystemSample:
        ps = self._psutil
        vm = ps.virtual_memory()
        out = SystemSample(time.time(), ps.cpu_percent(None), ps.cpu_count() or 1, int(vm.total - vm.available),
                           int(vm.total), trainer_pid)
        if trainer_pid is None:
            return out
        if trainer_host and trainer_host != host_name():
            out.trainer_note = f"trainer on {trainer_host}"
            return out
        try:
            if self._proc_pid != trainer_pid:
                self._proc = ps.Process(trainer_pid)
                self._proc_pid = trainer_pid
                self._proc.cpu_percent(None)
            with self._proc.oneshot():
                out.trainer_cpu_percent = self._proc.cpu_percent(None)
                out.trainer_rss = int(self._proc.memory_info().rss)
        except (ps.NoSuchProcess, ps.ZombieProcess):
            out.trainer_note = "trainer process has exited"
            self._proc_pid = None
        except ps.AccessDenied:
            out.trainer_note = "no permission to read the trainer process"
        return out


class GpuLogger:
    """Log a GPU sample into a run every `interval` seconds from a daemon thread (gpu_history.py).

    `GpuLogger(run).start()` in a trainer; does nothing but log one event saying why when NVML is
    unavailable. `open_sampler` is the NVML boundary: anything returning (sampler, reason) whose
    sampler has `sample(pid)` and `close()` (tests and benchmarks replay recorded samples through it).
    `own_memory` (optional) returns the bytes this process holds on the GPU as its framework sees
    them, for when NVML cannot match the process (containers).
    """

    def __init__(self, run, interval: float = 1.0, open_sampler=None, own_memory=None):
        self.run = run
        self.interval = interval
        self.open_sampler = open_sampler or open_gpu_sampler
        self.own_memory = own_memory
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "GpuLogger":
        sampler, reason = self.open_sampler()
        if sampler is None:
            self.run.event(f"GPU telemetry off: {reason}")
            return self
        self._thread = threading.Thread(target=self._loop, args=(sampler,), name="spintui-gpu-logger", daemon=True)
        self._thread.start()
        return self

    def _loop(self, sampler) -> None:
        from spintui.profiles.gpu_history import gpu_record

        pid = os.getpid()
        try:
            while True:  # the first sample at once: a short run has one too
                try:
                    sample = sampler.sample(pid)
                except TelemetryError as exc:
                    self.run.event(f"GPU telemetry stopped: {exc}")
                    return
                own = None
                if self.own_memory is not None:
                    try:
                        own = self.own_memory()
                    except Exception:
                        own = None
                self.run.log("gpu", **gpu_record(sample, own))
                self.samples += 1
                if self._stop.wait(self.interval):
                    return
        finally:
            sampler.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
