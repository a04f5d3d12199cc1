"""The writer's lock: an exclusive flock on a file beside the cache."""

from __future__ import annotations

import os
from pathlib import Path

from facetool.cache.records import lock_path
from facetool.errors import CacheError
from facetool.files import lock_exclusive, unlock


class CacheLock:
    """An exclusive flock on the cache's lock file, held for the writer's lifetime.

    The lock counts only while the lock file on disk is the one locked, so a holder may delete the file
    before it releases (`release(remove=True)`): whoever opened the old one sees it is gone and backs off.
    """

    def __init__(self, path: Path) -> None:
        self.file = lock_path(path)
        self.fd = lock_exclusive(
            self.file,
            cannot_create=f"{path}: cannot create the lock file {self.file}",
            busy=f"{path}: another process is writing this cache (lock {self.file} is held)",
            error=CacheError,
            mode=0o644,
        )
        if not self._still_on_disk():
            os.close(self.fd)
            raise CacheError(f"{path}: another process is writing this cache (lock {self.file} was replaced)")

    def _still_on_disk(self) -> bool:
        try:
            on_disk = os.stat(self.file)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self, *, remove: bool = False) -> None:
        """Unlock; with `remove`, delete the lock file first (an output written whole needs none left)."""
        if self.fd >= 0:
            if remove:
                self.file.unlink(missing_ok=True)
            unlock(self.fd)
            self.fd = -1
