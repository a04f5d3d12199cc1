"""Bulk copy: a new consolidated cache from faces of opened caches, stored bytes copied unchanged."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache.codec import encode_face
from facetool.cache.journal import clear_journal, last_segment
from facetool.cache.lock import CacheLock
from facetool.cache.reader import FaceCache
from facetool.cache.records import CacheFormat, FaceColumns, Failure, FailureColumns
from facetool.cache.store import PayloadSource, write_file
from facetool.errors import CacheError, UsageError
from facetool.files import check_output_not_input


@dataclass
class Selection:
    """Faces of one or more opened caches in output order: row r is face `index[r]` of `caches[which[r]]`."""

    caches: Sequence[FaceCache]
    which: np.ndarray
    index: np.ndarray
    transcode: CacheFormat | None = None  # re-encode every face into this format instead of copying bytes

    def _by_cache(self, rows: np.ndarray) -> Iterator[tuple[FaceCache, np.ndarray]]:
        for k, cache in enumerate(self.caches):
            pos = np.flatnonzero(self.which[rows] == k)
            if len(pos):
                yield cache, pos

    def sizes(self) -> np.ndarray:
        """Stored bytes of every row: known without reading images, or by a first encoding pass."""
        if self.transcode is not None:
            block = 1024
            parts = [
                [len(p) for p in self.payloads(i, min(i + block, len(self.index)))]
                for i in range(0, len(self.index), block)
            ]
            return np.array([n for part in parts for n in part], np.int64)
        rows = np.arange(len(self.index))
        out = np.zeros(len(rows), np.int64)
        for cache, pos in self._by_cache(rows):
            out[pos] = cache.payload_sizes(self.index[pos])
        return out

    def payloads(self, start: int, stop: int) -> list[np.ndarray]:
        """The payloads of rows start..stop: stored bytes, or faces re-encoded into `transcode`."""
        rows = np.arange(start, stop)
        out: list[Any] = [None] * len(rows)
        for cache, pos in self._by_cache(rows):
            idx = self.index[rows[pos]]
            if self.transcode is None:
                found = cache.payloads(idx)
            else:
                found = [encode_face(face, self.transcode) for face in cache.read_faces(idx)]
            for j, payload in zip(pos, found, strict=True):
                out[j] = payload
        return out


def check_combinable(path: Path, caches: Sequence[FaceCache]) -> None:
    """Refuse an output that is one of the input caches, and inputs of different storage formats."""
    if not caches:
        raise UsageError("no input caches")
    try:
        check_output_not_input(path, [cache.path for cache in caches])
    except UsageError as exc:
        raise UsageError(f"{exc} (refusing to overwrite an input cache)") from None
    for cache in caches[1:]:
        diff = caches[0].format.differences(cache.format)
        if diff:
            raise CacheError(f"{cache.path}: cannot combine with {caches[0].path}: {'; '.join(diff)}")


def write_selection(
    path: str | os.PathLike[str],
    parts: Sequence[tuple[FaceCache, Sequence[int], Sequence[Failure]]],
    meta: dict[str, Any],
    *,
    jpeg_quality: int | None = None,
) -> None:
    """Write a new consolidated cache from faces of opened caches, copying the stored bytes unchanged.

    `parts` are (cache, face indices, failures); all caches must share one format and every path must
    occur once. `jpeg_quality` re-encodes the faces as JPEG of that quality instead. The output must not be
    one of the inputs (nor a second name of one), is written under the output's lock, and replaces the old
    file whole; a journal left beside the output belongs to the old file and is never shown on the new one.
    """
    path = Path(path)
    check_combinable(path, [cache for cache, _, _ in parts])
    fmt = parts[0][0].format
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; -o must name the face cache file to write")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: folder {path.parent} does not exist")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise UsageError(f"jpeg_quality {jpeg_quality}: expected 1..100")
    out_fmt = fmt if jpeg_quality is None else CacheFormat(fmt.image_size, "jpeg", jpeg_quality)
    tables, which, index = [], [], []
    for k, (cache, indices, _) in enumerate(parts):
        idx = np.asarray(indices, np.int64).reshape(-1)
        tables.append(cache.face_columns(idx))
        which.append(np.full(len(idx), k, np.int64))
        index.append(idx)
    faces = FaceColumns.concat(tables)
    order = np.array(sorted(range(len(faces.paths)), key=faces.paths.__getitem__), np.int64)
    faces = faces.take(order)
    for a, b in itertools.pairwise(faces.paths):
        if a == b:
            raise UsageError(f"{a}: the same path is selected twice")
    selection = Selection(
        [c for c, _, _ in parts],
        np.concatenate(which)[order],
        np.concatenate(index)[order],
        None if jpeg_quality is None else out_fmt,
    )
    failures = FailureColumns.from_items(sorted((f for _, _, fs in parts for f in fs), key=lambda f: f.path))
    write_payloads(path, out_fmt, meta, faces, selection, failures)


def write_payloads(
    path: Path,
    fmt: CacheFormat,
    meta: dict[str, Any],
    faces: FaceColumns,
    source: PayloadSource,
    failures: FailureColumns | None = None,
) -> None:
    """Write a new consolidated cache whose faces (sorted by path) have the stored payloads `source` gives,
    under the output's lock; the old file is replaced whole and a journal left beside it is deleted.

    For writers that already hold encoded images (`write_selection`, `facetool.formats` imports): payloads
    are copied as they are, block by block, so memory stays bounded by one block.
    """
    lock = CacheLock(path)
    try:
        through = last_segment(path)
        write_file(path, fmt, meta, through, faces, failures or FailureColumns(), source)
        clear_journal(path, through)
    finally:
        lock.release(remove=True)
