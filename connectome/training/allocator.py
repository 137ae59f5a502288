"""Host memory allocator settings for CPU training: reuse freed activation memory instead of unmapping it.

glibc serves every allocation above its mmap threshold (128 KiB to 32 MiB, adaptive) with a
fresh mmap and returns it with munmap on free. A DenseNet's activations are tens to hundreds
of MB per batch, allocated and freed every step, so each step pays the kernel to map and zero
those pages again: measured here, evaluating DenseNet-40-12 at batch 500 spent as much time in
the kernel (page faults) as in computing (docs/benchmarks.md). Telling glibc never to mmap, to
keep freed memory (trim threshold 1 GiB) and to use one arena (Ray Tune runs the trial in a
thread, whose arena would otherwise mmap its own heaps) makes the pages stay mapped after the
first step. The cost: the process keeps its peak heap instead of handing it back between steps.

Glibc on Linux only (elsewhere nothing happens); `CONNECTOME_MALLOC=system` leaves it alone.
"""
from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 1 << 30), (M_ARENA_MAX, 1))

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply SETTINGS once per process; True if glibc took them."""
    global _applied
    if _applied is None:
        _applied = os.environ.get("CONNECTOME_MALLOC", "") != "system" and _mallopt(SETTINGS)
    return _applied


def _mallopt(settings: tuple[tuple[int, int], ...]) -> bool:
    """glibc's mallopt for each (param, value); False without glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in settings)
