"""The C heap (glibc): hand freed memory back to the system after large, short-lived buffers.

glibc serves a large allocation from mmap and frees it straight back, but after such a free it
raises the threshold (up to 32 MB), so later uploads and decodes of a few MB land in the heap and
stay in the process's RSS after they are freed: a flood of 32 large JPEGs left the server
2.5 GB above idle. `hold_large_buffers_apart()` fixes the threshold at 1 MB (allocations at least
that large are mmapped and returned on free); `return_freed_memory()` trims every arena.
Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import functools

M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except (OSError, TypeError):  # no C library to ask (Windows)
        return None


def hold_large_buffers_apart() -> bool:
    """Serve allocations of 1 MB and more from mmap, always; True where it took effect."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def return_freed_memory() -> None:
    """Give freed heap memory back to the system (every arena)."""
    libc = _libc()
    if libc:
        libc.malloc_trim(0)
