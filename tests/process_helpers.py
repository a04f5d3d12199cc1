"""Real process conditions for tests: a process's children, whether it still runs, what it has loaded (/proc),
and a file-size limit (RLIMIT_FSIZE) that makes this process's writes fail partway with EFBIG."""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc/<id>/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """For the block, no file of this process may grow past `limit` bytes: a longer write stores the first
    `limit` bytes and then fails with a real OSError (EFBIG), as a disk filling up mid-write would.

    The soft limit is lowered and SIGXFSZ ignored (so the write fails instead of killing the process); both
    are restored after the block.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def has_mapped(pid: int, needle: str) -> bool:
    """Whether a file whose path holds `needle` is mapped into `pid` (a shared library it has loaded)."""
    try:
        return needle in Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
