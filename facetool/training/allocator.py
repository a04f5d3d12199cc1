"""Keep the C allocator's memory during training, so a step does not fault its buffers back in (issue 36).

A training step frees and reallocates the same large activation buffers every time. glibc's malloc serves big
blocks with mmap and returns freed memory at the heap's top to the OS (trim), so a later step can page-fault all
of it back in (tens of thousands of minor faults per step at 64 px, depending on glibc's own moving thresholds).
`keep_memory` raises both thresholds for the duration of a block (only on glibc) and afterwards sets glibc's
starting values again (its own adjustment of them stays off, as after any mallopt) and trims, so the memory
held is handed back when the block ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's documented start values of both thresholds (it adjusts them itself until one is set)
GLIBC_DEFAULT = 128 * 1024
# the most mmap_threshold may be on 64-bit glibc (HEAP_MAX / 2: 32 MiB); larger blocks still use mmap
KEPT_MMAP = 32 * 1024 * 1024
KEPT_TRIM = 1 << 30


def _libc() -> ctypes.CDLL | None:
    """The process's glibc, or None elsewhere (musl, macOS, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def set_kept(kept: bool) -> bool:
    """Raise glibc's trim and mmap thresholds (`kept`) or set their defaults again; False where not glibc."""
    libc = _libc()
    if libc is None:
        return False
    trim, mmap = (KEPT_TRIM, KEPT_MMAP) if kept else (GLIBC_DEFAULT, GLIBC_DEFAULT)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))


@contextmanager
def keep_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed memory stays with the process (yields whether that could be set); after it,
    glibc's defaults are set again and the free memory is handed back to the OS."""
    if not enabled or not set_kept(True):
        yield False
        return
    try:
        yield True
    finally:
        set_kept(False)
        libc = _libc()
        if libc is not None:
            libc.malloc_trim(0)
