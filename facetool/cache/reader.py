"""Reading a face cache: the consolidated file plus its journal, as one snapshot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache.codec import decode_into
from facetool.cache.journal import JournalMoved, Segment, read_journal
from facetool.cache.merge import Merged, merge_journal
from facetool.cache.records import CacheFormat, FaceColumns, FaceRecord, Failure, FailureColumns, journal_dir
from facetool.cache.store import FileStore
from facetool.errors import CacheError


class FaceCache:
    """A face cache opened for reading: metadata in numpy arrays, paths and images read on demand.

    Cheap without decoding anything: `labels` (int64 per face), `identities` (sorted names), `image_size`,
    `sizes`, `boxes`, `scores`, `detected`, `landmarks` ((n, 5, 2), NaN where the detector gave none), `len()`. `paths` reads the path strings on first use.
    `read_faces(indices)` decodes the faces of the given rows in the order given; faces of one identity are
    adjacent (rows are sorted by path, which starts with the identity folder), so a batch of a few identities
    is a few contiguous reads. Open a cache in each worker process, or let a forked worker use an inherited
    one: it reopens the same file under its own handle on first read.
    """

    def __init__(self, path: Path, base: FileStore, merged: Merged) -> None:
        self.path = path
        self._base = base
        self._merged = merged
        self._format = base.format
        self.meta: dict[str, Any] = base.meta
        self._faces = merged.faces.compact()
        self.identities: list[str] = self._faces.names
        self.labels: np.ndarray = self._faces.labels
        self.sizes: np.ndarray = merged.faces.sizes
        self.mtimes_ns: np.ndarray = merged.faces.mtimes
        self.boxes: np.ndarray = merged.faces.boxes
        self.scores: np.ndarray = merged.faces.scores
        self.detected: np.ndarray = merged.faces.detected
        self.landmarks: np.ndarray = merged.faces.landmarks
        self.failures: list[Failure] = merged.failures.items()

    @property
    def image_size(self) -> int:
        return self._format.image_size

    @property
    def encoding(self) -> str:
        return self._format.encoding

    @property
    def jpeg_quality(self) -> int:
        return self._format.jpeg_quality

    @property
    def format(self) -> CacheFormat:
        return self._format

    @property
    def paths(self) -> list[str]:
        """Image path of every face, sorted; read from the file on first use (a million strings cost)."""
        return self._faces.paths

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def journal_segments(self) -> list[int]:
        """Numbers of the journal segments shown on top of the consolidated file (empty when none)."""
        return list(self._merged.segments)

    @property
    def journal_through(self) -> int:
        """The highest journal segment number this snapshot includes, folded or not."""
        return max([self._base.journal_through, *self._merged.segments])

    def face_columns(self, idx: np.ndarray | None = None) -> FaceColumns:
        """The metadata of faces `idx` (all when None) as columns, for writing them elsewhere."""
        return self._faces if idx is None else self._faces.take(idx)

    def failure_columns(self) -> FailureColumns:
        """The failures as columns, for writing them elsewhere."""
        return self._merged.failures

    def __enter__(self) -> FaceCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._base.close()

    def resume_keys(self) -> set[tuple[str, int, int]]:
        """(path, size, mtime_ns) of every face and failure: the resume keys."""
        keys = {(p, int(s), int(m)) for p, s, m in zip(self.paths, self.sizes, self.mtimes_ns, strict=True)}
        return keys | {(f.path, int(f.size), int(f.mtime_ns)) for f in self.failures}

    def entries(self) -> dict[str, tuple[int, int, bool]]:
        """path -> (size, mtime_ns, is a face) of every face and failure."""
        found = {
            p: (int(s), int(m), True) for p, s, m in zip(self.paths, self.sizes, self.mtimes_ns, strict=True)
        }
        return found | {f.path: (int(f.size), int(f.mtime_ns), False) for f in self.failures}

    def record(self, i: int) -> FaceRecord:
        """The full record of face `i` (decodes its image)."""
        box = None if np.isnan(self.boxes[i]).any() else tuple(float(v) for v in self.boxes[i])
        landmarks = None if np.isnan(self.landmarks[i]).any() else self.landmarks[i].copy()
        return FaceRecord(
            self.paths[i],
            self.identities[self.labels[i]],
            int(self.sizes[i]),
            int(self.mtimes_ns[i]),
            self.read_faces(np.array([i]))[0],
            box,  # type: ignore[arg-type]
            float(self.scores[i]),
            bool(self.detected[i]),
            landmarks,
        )

    def read_faces(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(n, S, S, 3) uint8 RGB faces at `indices` (all faces when None), in the order asked."""
        s, n = self.image_size, len(self)
        if indices is None:
            idx = None
            out = np.empty((n, s, s, 3), np.uint8)
        else:
            idx = np.asarray(indices, np.int64).reshape(-1)
            if len(idx) and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"face index out of range for a cache of {n} faces")
            idx = np.where(idx < 0, idx + n, idx)
            out = np.empty((len(idx), s, s, 3), np.uint8)
        source, index = self._merged.source, self._merged.index
        if not source.any():
            self._base.read_faces(None if idx is None else index[idx], out)
            return out
        wanted = np.arange(n) if idx is None else idx
        from_file = source[wanted] == 0
        if from_file.any():
            part = np.empty((int(from_file.sum()), s, s, 3), np.uint8)
            self._base.read_faces(index[wanted[from_file]], part)
            out[from_file] = part
        journal_pos = np.flatnonzero(~from_file)
        payloads = [self._merged.journal_payloads[index[wanted[k]]] for k in journal_pos]
        if self.encoding == "raw":
            for k, p in zip(journal_pos, payloads, strict=True):
                out[k] = p
        else:
            part = np.empty((len(payloads), s, s, 3), np.uint8)
            decode_into(payloads, part, str(journal_dir(self.path)))
            out[journal_pos] = part
        return out

    def payloads(self, idx: np.ndarray) -> list[np.ndarray]:
        """Stored payloads (JPEG bytes or raw arrays) of faces `idx`, for copying without re-encoding."""
        source, index = self._merged.source[idx], self._merged.index[idx]
        it = iter(self._base.payloads(index[source == 0]))
        journal = self._merged.journal_payloads
        return [next(it) if src == 0 else journal[i] for src, i in zip(source, index, strict=True)]

    def payload_sizes(self, idx: np.ndarray) -> np.ndarray:
        """Stored bytes of each face `idx`, known without reading the images."""
        source, index = self._merged.source[idx], self._merged.index[idx]
        sizes = np.zeros(len(idx), np.int64)
        sizes[source == 0] = self._base.payload_sizes(index[source == 0])
        sizes[source == 1] = [self._merged.journal_payloads[i].nbytes for i in index[source == 1]]
        return sizes


def _identity(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1, -1)
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _open(path: Path) -> tuple[FileStore, list[Segment]]:
    """The file and its journal as one snapshot: retried when a writer replaced the file meanwhile."""
    for _attempt in range(10):
        before = _identity(path)
        base = FileStore(path)
        try:
            segments = read_journal(path, base.journal_through, base.format)
            if _identity(path) == before:
                return base, segments
            base.close()
        except JournalMoved:
            base.close()
        except BaseException:
            base.close()
            raise
    raise CacheError(f"{path}: the cache kept changing while it was being opened")


def open_cache(path: str | os.PathLike[str]) -> FaceCache:
    """Open a face cache for reading, including records committed to its journal but not yet consolidated.

    Raises CacheError naming the file when it is missing, not a face cache, of another format version,
    truncated or corrupted.
    """
    path = Path(path)
    base, segments = _open(path)
    try:
        return FaceCache(path, base, merge_journal(base, segments))
    except BaseException:
        base.close()
        raise
