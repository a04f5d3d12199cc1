"""Writing a face cache: the lock, journal commits and consolidation into the HDF5 file."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache.codec import encode_face
from facetool.cache.copy import Selection
from facetool.cache.journal import clear_journal, write_segment
from facetool.cache.lock import CacheLock
from facetool.cache.reader import open_cache
from facetool.cache.records import (
    ENCODINGS,
    TMP_SUFFIX,
    CacheFormat,
    FaceColumns,
    FaceRecord,
    Failure,
    FailureColumns,
    Removal,
    journal_dir,
)
from facetool.cache.store import FileStore, write_file
from facetool.config.dataset import CACHE_DEFAULTS
from facetool.errors import CacheError, UsageError
from facetool.identities import normalize_identity


def _consolidate(path: Path, meta: dict[str, Any] | None) -> tuple[CacheFormat, int, int]:
    """Fold the journal into a new cache file, replace the old one, delete the journal.

    Returns the format, the last folded segment number and the new file size. Caller holds the lock.
    """
    with open_cache(path) as cache:
        through = cache.journal_through
        if cache.journal_segments or (meta is not None and meta != cache.meta):
            n = len(cache)
            selection = Selection([cache], np.zeros(n, np.int64), np.arange(n))
            new_meta = cache.meta if meta is None else meta
            write_file(
                path,
                cache.format,
                new_meta,
                through,
                cache.face_columns(),
                cache.failure_columns(),
                selection,
            )
    clear_journal(path, through)
    return cache.format, through, path.stat().st_size


CONSOLIDATE_BYTES = 64 * 1024 * 1024
CONSOLIDATE_FRACTION = 0.5
"""The journal is folded into the cache file once it holds this fraction of the file's bytes (and at least
CONSOLIDATE_BYTES): the file then grows geometrically, so a run copies O(final size) bytes in all."""


class CacheWriter:
    """Adds face records and failures to a cache; `commit()` makes the added ones durable.

    Each commit writes one journal segment; the journal is folded into the HDF5 file when it has grown
    to `consolidate_fraction` of the file (and at least `consolidate_bytes`), and at close: never on a timer,
    so the bytes copied over a whole run stay within a small multiple of the final size.
    Appending to an existing cache requires the same image size, encoding and JPEG quality. `meta`
    (detector and settings, JSON-serialisable) replaces the stored one at consolidation; None keeps it.
    Leaving the `with` block by an exception drops records added since the last commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_size: int = 160,
        encoding: str = CACHE_DEFAULTS.encoding,
        meta: dict[str, Any] | None = None,
        *,
        jpeg_quality: int = CACHE_DEFAULTS.jpeg_quality,
        consolidate_bytes: int = CONSOLIDATE_BYTES,
        consolidate_fraction: float = CONSOLIDATE_FRACTION,
    ) -> None:
        if encoding not in ENCODINGS:
            raise UsageError(f"cache encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
        if not 1 <= jpeg_quality <= 100:
            raise UsageError(f"jpeg_quality {jpeg_quality}: expected 1..100")
        if image_size < 1:
            raise UsageError(f"image_size {image_size}: expected a positive number of pixels")
        if meta is not None:
            try:
                json.dumps(meta)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"cache meta is not JSON-serialisable ({exc})") from None
        self.path = Path(path)
        self.format = CacheFormat(int(image_size), encoding, int(jpeg_quality) if encoding == "jpeg" else 0)
        self._meta = meta
        self._consolidate_bytes = consolidate_bytes
        self._consolidate_fraction = consolidate_fraction
        self._pending: list[tuple[FaceRecord | Failure, np.ndarray | None]] = []
        if not self.path.parent.is_dir():
            raise CacheError(f"{self.path}: directory {self.path.parent} does not exist")
        self._lock = CacheLock(self.path)
        try:
            self._open_or_create()
        except BaseException:
            self._lock.release()
            raise

    def _open_or_create(self) -> None:
        for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)  # an interrupted consolidation's; we hold the lock
        if not self.path.exists():
            clear_journal(self.path, 1 << 62)  # a journal without its cache file is an orphan
            write_file(self.path, self.format, self._meta or {}, 0, FaceColumns(), FailureColumns(), None)
        base = FileStore(self.path)
        try:
            diff = self.format.differences(base.format)
        finally:
            base.close()
        if diff:
            raise CacheError(
                f"{self.path}: cannot append: the cache has {'; '.join(diff)} (cache vs this run)"
            )
        _, self._through, self._file_bytes = _consolidate(self.path, self._meta)
        with open_cache(self.path) as cache:
            self._entries = cache.entries()
        self._journal_bytes = 0
        self._closed = False

    def known_keys(self) -> set[tuple[str, int, int]]:
        """(path, size, mtime_ns) of everything in the cache or added to this writer, faces and failures."""
        return {(path, size, mtime) for path, (size, mtime, _) in self._entries.items()}

    def known_entries(self) -> dict[str, tuple[int, int, bool]]:
        """path -> (size, mtime_ns, is a face) of everything in the cache or added to this writer."""
        return dict(self._entries)

    def remove(self, path: str) -> None:
        """Queue the removal of the face or failure of `path`; durable at the next commit."""
        if self._closed:
            raise CacheError(f"{self.path}: the writer is closed")
        self._pending.append((Removal(path), None))
        self._entries.pop(path, None)

    def add(self, item: FaceRecord | Failure) -> None:
        """Queue a face record or a failure; it becomes durable at the next commit."""
        if self._closed:
            raise CacheError(f"{self.path}: the writer is closed")
        if isinstance(item, (FaceRecord, Failure)):
            item = dataclasses.replace(item, identity=normalize_identity(item.identity))
        if isinstance(item, Failure):
            self._pending.append((item, None))
        elif isinstance(item, FaceRecord):
            s = self.format.image_size
            face = np.asarray(item.face)
            if face.shape != (s, s, 3) or face.dtype != np.uint8:
                raise ValueError(
                    f"{item.path}: face must be ({s}, {s}, 3) uint8, got {face.shape} {face.dtype}"
                )
            self._pending.append((item, encode_face(face, self.format)))
        else:
            raise TypeError(f"expected FaceRecord or Failure, got {type(item).__name__}")
        self._entries[item.path] = (int(item.size), int(item.mtime_ns), isinstance(item, FaceRecord))

    def commit(self) -> None:
        """Make every record added so far durable; consolidate when the journal has grown enough."""
        if self._closed:
            raise CacheError(f"{self.path}: the writer is closed")
        if self._pending:
            directory = journal_dir(self.path)
            try:
                directory.mkdir(exist_ok=True)
            except OSError as exc:
                raise CacheError(f"{directory}: cannot create the journal ({exc.strerror or exc})") from None
            self._through += 1
            self._journal_bytes += write_segment(directory, self._through, self.format, self._pending)
            self._pending = []
        due = max(self._consolidate_bytes, self._consolidate_fraction * self._file_bytes)
        if self._journal_bytes and self._journal_bytes >= due:
            self.consolidate()

    def consolidate(self) -> None:
        """Fold the journal into the HDF5 file now (atomic replace)."""
        _, self._through, self._file_bytes = _consolidate(self.path, self._meta)
        self._journal_bytes = 0

    def close(self, *, commit: bool = True) -> None:
        """Commit (unless told not to), consolidate and release the lock."""
        if self._closed:
            return
        try:
            if commit:
                self.commit()
            self._pending = []
            self.consolidate()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):
            self.close(commit=False)
        self._lock.release()
