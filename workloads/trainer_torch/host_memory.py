"""Keep freed host memory in the process on glibc, so a CPU training step stops page-faulting its tensors back in.

Every step allocates the same activations and gradients and frees them by its end. By default glibc
hands large freed blocks straight back to the kernel (blocks over the mmap threshold are munmapped, and
free space at the heap's top past the trim threshold is released), so the next step faults every page
of them in again. Measured on `mini` (seq-len 256, batch 8, one thread): 214k minor page faults over 25
steps before, 90k after, and about 5% off the step time. PyTorch's CUDA caching allocator keeps freed
device memory for the same reason; on CPU, torch allocates through malloc, so the fix is malloc's.

mallopt(3): the parameter numbers are glibc's `malloc/malloc.h` (M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3);
the mmap threshold may be at most DEFAULT_MMAP_THRESHOLD_MAX, 4 MiB * sizeof(long) = 32 MiB on 64-bit, and
setting either one turns off glibc's own dynamic threshold, which would otherwise drop back to trimming.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD: Final = 32 * 2**20
"""Blocks up to this size come from the heap and are reused; glibc refuses a larger threshold on 64-bit."""
TRIM_THRESHOLD: Final = 2**30
"""Free space kept at the heap's top: above one step's transient memory for any model a CPU can train."""


def retain_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False (and nothing changed) off Linux or without glibc's mallopt."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0 and changes nothing.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
