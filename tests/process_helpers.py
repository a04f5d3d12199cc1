"""Looking at real process trees from tests: a process's children, whether it still runs, what it has loaded (/proc)."""

from __future__ import annotations

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


def has_mapped(pid: int, needle: str) -> bool:
    """Whether a file whose path holds `needle` is mapped into `pid` (a shared library it has loaded)."""
    try:
        return needle in Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
