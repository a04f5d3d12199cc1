"""Bulk copy: a new consolidated cache from faces of opened caches, stored bytes copied unchanged."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache.journal import clear_journal
from facetool.cache.lock import CacheLock
from facetool.cache.reader import FaceCache
from facetool.cache.records import FaceColumns, Failure, FailureColumns
from facetool.cache.store import write_file
from facetool.errors import CacheError, UsageError


@dataclass
class Selection:
    """Faces of one or more opened caches in output order: row r is face `index[r]` of `caches[which[r]]`."""

    caches: Sequence[FaceCache]
    which: np.ndarray
    index: np.ndarray

    def _by_cache(self, rows: np.ndarray) -> Iterator[tuple[FaceCache, np.ndarray]]:
        for k, cache in enumerate(self.caches):
            pos = np.flatnonzero(self.which[rows] == k)
            if len(pos):
                yield cache, pos

    def sizes(self) -> np.ndarray:
        rows = np.arange(len(self.index))
        out = np.zeros(len(rows), np.int64)
        for cache, pos in self._by_cache(rows):
            out[pos] = cache.payload_sizes(self.index[pos])
        return out

    def payloads(self, start: int, stop: int) -> list[np.ndarray]:
        rows = np.arange(start, stop)
        out: list[Any] = [None] * len(rows)
        for cache, pos in self._by_cache(rows):
            for j, payload in zip(pos, cache.payloads(self.index[rows[pos]]), strict=True):
                out[j] = payload
        return out


def write_selection(
    path: str | os.PathLike[str],
    parts: Sequence[tuple[FaceCache, Sequence[int], Sequence[Failure]]],
    meta: dict[str, Any],
) -> None:
    """Write a new consolidated cache from faces of opened caches, copying the stored bytes unchanged.

    `parts` are (cache, face indices, failures); all caches must share one format and every path must
    occur once. The output must not be one of the inputs.
    """
    path = Path(path)
    if not parts:
        raise UsageError("no input caches")
    fmt = parts[0][0].format
    for cache, _, _ in parts[1:]:
        diff = fmt.differences(cache.format)
        if diff:
            raise CacheError(f"{cache.path}: cannot combine with {parts[0][0].path}: {'; '.join(diff)}")
    for cache, _, _ in parts:
        if path.exists() and path.resolve() == cache.path.resolve():
            raise UsageError(f"{path}: refusing to overwrite an input cache")
    if not path.parent.is_dir():
        raise CacheError(f"{path}: directory {path.parent} does not exist")
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
        [c for c, _, _ in parts], np.concatenate(which)[order], np.concatenate(index)[order]
    )
    failures = FailureColumns.from_items(sorted((f for _, _, fs in parts for f in fs), key=lambda f: f.path))
    lock = CacheLock(path)
    try:
        write_file(path, fmt, meta, 0, faces, failures, selection)
        clear_journal(path, 1 << 62)
    finally:
        lock.release()
