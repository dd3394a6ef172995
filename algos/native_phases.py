"""Phase timings of the compiled C update (offpolicy_update.c), for traces of training.

torch.profiler sees the compiled update as one opaque call. While a trace is captured the C code
times its own phases (exclusive wall time and entries of each) and these rows take the call's
place in the kernel table and in the trace (algos/trace.py).
"""

from __future__ import annotations

import ctypes

from spintui.algos import native

# In the order of the C enum; index 0 is time inside no phase (between blocks), never shown.
PHASES = ("", "backup (target actor and critics)", "critic forward+backward", "actor forward+backward",
          "temperature (alpha)", "Adam", "Polyak")
SOURCE = "C update"


def _lib():
    lib, _ = native._load()
    if lib is None:
        return None
    if not getattr(lib, "_spintui_phases", False):
        lib.spintui_phase_timing.argtypes = [ctypes.c_int]
        lib.spintui_phase_timing.restype = None
        lib.spintui_phase_read.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_longlong),
                                           ctypes.c_int]
        lib.spintui_phase_read.restype = ctypes.c_int
        lib._spintui_phases = True
    return lib


def start() -> bool:
    """Zero the totals and time from now on; False when the compiled update is not loaded here."""
    lib = _lib()
    if lib is None:
        return False
    lib.spintui_phase_timing(1)
    return True


def stop() -> list[tuple[str, float, int]]:
    """(phase, seconds, entries) of every phase entered since `start()`; timing is off afterwards."""
    lib = _lib()
    if lib is None:
        return []
    n = len(PHASES)
    seconds, calls = (ctypes.c_double * n)(), (ctypes.c_longlong * n)()
    lib.spintui_phase_read(seconds, calls, n)
    lib.spintui_phase_timing(0)
    return [(name, float(seconds[i]), int(calls[i])) for i, name in enumerate(PHASES) if i and calls[i]]
