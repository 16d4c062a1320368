"""glibc's allocator settings for the trainer: keep freed memory for reuse.

An update allocates and frees the same megabyte-sized tensors thousands of times (HASAC's
[1000 x 256] activations and their gradients, in a main and a helper thread). With glibc's
defaults, freed memory at the top of a heap is handed back to the kernel once more than a few
megabytes are free there, and the next allocation of that size faults every page in again:
about 3,000 page faults per HASAC gradient step. `keep_freed_memory` raises both thresholds
(allocations below 32 MiB come from the heap; up to 256 MiB of freed memory stay mapped), which
leaves those faults out (docs/performance.md). Memory use stays near its peak between updates,
which the next update reaches again anyway. Values are unchanged: only where memory comes from.

Both settings are needed together: a trim threshold alone switches off glibc's adaptive mmap
threshold, and every allocation over 128 KiB is then mapped and faulted afresh (measured: 8x
the page faults of the defaults).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its adaptive threshold on 64-bit
TRIM_THRESHOLD = 256 << 20


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Set this process's glibc allocator to keep freed memory mapped for reuse; False (and
    nothing changed) where the C library is not glibc (macOS, musl)."""
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; either call alone makes page faults worse (module docstring)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
