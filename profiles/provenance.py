"""Where a run came from: versions, the git revision of this checkout, the host and its CPU.

Run manifests (`versions`), profile environments (kernel_sweep) and the compiled update's cache key
(algos/native) all describe the machine and the code with these functions, so they agree. Nothing
here imports torch or NVML unless the caller already did or asks for it; nothing here raises.
"""

from __future__ import annotations

import platform
import socket
import sys
from pathlib import Path

LOADED_PACKAGES = ("torch", "gymnasium", "numpy", "triton")


def host_name() -> str:
    """The name a run records as its host; viewers compare it with their own."""
    return socket.gethostname()


def python_version() -> str:
    return platform.python_version()


def spintui_version() -> str:
    from spintui import __version__

    return __version__


def loaded_version(module: str) -> str | None:
    """The version of a package this process already imported (None if it did not)."""
    mod = sys.modules.get(module)
    return None if mod is None else getattr(mod, "__version__", "?")


def installed_version(distribution: str) -> str | None:
    """The version of an installed distribution, without importing it."""
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:
        return None


def driver_version() -> str | None:
    """The NVIDIA driver version, or None (telemetry is optional; never fail a run for it)."""
    try:
        from spintui.profiles.gpu import driver_version as nvml_driver_version

        return nvml_driver_version()
    except Exception:
        return None


def cpu_name() -> str:
    """A readable CPU model ("AMD EPYC 9654 96-Core Processor")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity() -> str:
    """What code built with -march=native depends on: the CPU's feature flags (a shared home
    directory may see several kinds of machine)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(start: Path | None = None) -> str | None:
    """The commit of the spintui checkout this code runs from, read from .git without a subprocess."""
    here = (start or Path(__file__)).resolve()
    for parent in [here, *here.parents]:
        git = parent / ".git"
        if git.is_file():  # a worktree: "gitdir: PATH"
            try:
                git = Path(git.read_text().split(":", 1)[1].strip())
            except (OSError, IndexError):
                return None
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text().strip()
                if not head.startswith("ref:"):
                    return head[:12]
                ref = head.split(" ", 1)[1]
                ref_file = git / ref
                if not ref_file.exists():  # worktrees keep refs in the common dir
                    common = git / "commondir"
                    if common.exists():
                        ref_file = (git / common.read_text().strip()).resolve() / ref
                if ref_file.exists():
                    return ref_file.read_text().strip()[:12]
                packed = (ref_file.parents[len(Path(ref).parts) - 1] / "packed-refs")
                for line in packed.read_text().splitlines() if packed.exists() else []:
                    if line.endswith(" " + ref):
                        return line.split()[0][:12]
            except OSError:
                return None
            return None
    return None


def versions() -> dict:
    """The `versions` of a run manifest: Python, spintui (and its commit), the packages already
    loaded, CUDA and the GPU when torch sees one, the NVIDIA driver."""
    out = {"python": python_version(), "spintui": spintui_version()}
    for module in LOADED_PACKAGES:
        found = loaded_version(module)
        if found is not None:
            out[module] = found
    revision = git_revision()
    if revision:
        out["spintui_git"] = revision
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["gpu"] = torch.cuda.get_device_name(0)
    driver = driver_version()
    if driver:
        out["nvidia_driver"] = driver
    return out
