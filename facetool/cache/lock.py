"""The writer's lock: an exclusive flock on a file beside the cache."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from facetool.cache.records import lock_path
from facetool.errors import CacheError


class CacheLock:
    """An exclusive flock on the cache's lock file, held for the writer's lifetime."""

    def __init__(self, path: Path) -> None:
        self.file = lock_path(path)
        try:
            self.fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheError(
                f"{path}: cannot create the lock file {self.file} ({exc.strerror or exc})"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise CacheError(
                f"{path}: another process is writing this cache (lock {self.file} is held)"
            ) from None

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
