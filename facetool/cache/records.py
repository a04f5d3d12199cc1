"""Face records, failures, the cache format, and their columnar metadata tables."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_NAME = "facetool-face-cache"
FORMAT_VERSION = 1
ENCODINGS = ("jpeg", "raw")
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class FaceRecord:
    """One image that produced a face crop."""

    path: str
    identity: str
    size: int
    mtime_ns: int
    face: np.ndarray
    box: tuple[float, float, float, float] | None
    score: float
    detected: bool
    landmarks: np.ndarray | None = None  # (5, 2) pixels of the upright image, when the detector gave them


@dataclass(frozen=True)
class Failure:
    """One image that could not be used, with the reason."""

    path: str
    identity: str
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class Removal:
    """The entry (face or failure) of `path` leaves the cache: its image was deleted, moved or changed."""

    path: str


@dataclass(frozen=True)
class CacheFormat:
    """What two caches must share to be appended to or merged with each other."""

    image_size: int
    encoding: str
    jpeg_quality: int

    def differences(self, other: CacheFormat) -> list[str]:
        """Human-readable `name: mine vs theirs` for every field that differs."""
        names = ["image_size", "encoding"] + (["jpeg_quality"] if self.encoding == other.encoding else [])
        return [
            f"{name} {getattr(other, name)!r} vs {getattr(self, name)!r}"
            for name in names
            if getattr(self, name) != getattr(other, name)
        ]


def journal_dir(path: str | os.PathLike[str]) -> Path:
    """The directory of journal segments that belongs to the cache at `path`."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file a writer holds while it writes the cache at `path`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


LANDMARK_SHAPE = (5, 2)


def no_landmarks(n: int) -> np.ndarray:
    """The landmarks column of `n` faces whose detector gave none: NaN."""
    return np.full((n, *LANDMARK_SHAPE), np.nan, np.float32)


class FaceColumns:
    """Metadata of face records in numpy columns; identities as `labels` into the sorted `names`.

    Paths are the one column that costs a Python string per face, so a file's are read only when asked
    (`load_paths`); labels, sizes, boxes and scores are plain arrays.
    """

    def __init__(
        self,
        names: Sequence[str] = (),
        labels: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
        mtimes: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        detected: np.ndarray | None = None,
        landmarks: np.ndarray | None = None,
        *,
        paths: list[str] | None = None,
        load_paths: Callable[[], list[str]] | None = None,
    ) -> None:
        self.names = list(names)
        self.labels = np.zeros(0, np.int64) if labels is None else np.asarray(labels, np.int64)
        n = len(self.labels)
        self.sizes = np.zeros(n, np.int64) if sizes is None else np.asarray(sizes, np.int64)
        self.mtimes = np.zeros(n, np.int64) if mtimes is None else np.asarray(mtimes, np.int64)
        self.boxes = (
            np.zeros((n, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        )
        self.scores = np.zeros(n, np.float32) if scores is None else np.asarray(scores, np.float32)
        self.detected = np.zeros(n, bool) if detected is None else np.asarray(detected, bool)
        self.landmarks = (
            no_landmarks(n)
            if landmarks is None
            else np.asarray(landmarks, np.float32).reshape(-1, *LANDMARK_SHAPE)
        )
        self._paths = paths
        self._load_paths = load_paths

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def paths(self) -> list[str]:
        """The image paths, read from the file the first time they are asked for."""
        if self._paths is None:
            self._paths = self._load_paths() if self._load_paths is not None else []
        return self._paths

    @property
    def identities(self) -> list[str]:
        """The identity name of every face (a Python list: for small tables and checks only)."""
        return [self.names[i] for i in self.labels]

    def compact(self) -> FaceColumns:
        """The same faces with only the identity names in use, still sorted, labels renumbered."""
        used = np.unique(self.labels)
        if len(used) == len(self.names):
            return self
        out = self.take(np.arange(len(self)), keep_paths_lazy=True)
        out.names = [self.names[i] for i in used]
        out.labels = np.searchsorted(used, self.labels).astype(np.int64)
        return out

    def take(self, idx: np.ndarray, *, keep_paths_lazy: bool = False) -> FaceColumns:
        """Rows `idx`, in that order."""
        if keep_paths_lazy and self._paths is None:
            paths, load = None, self._load_paths
        else:
            paths, load = [self.paths[i] for i in idx], None
        return FaceColumns(
            self.names,
            self.labels[idx],
            self.sizes[idx],
            self.mtimes[idx],
            self.boxes[idx],
            self.scores[idx],
            self.detected[idx],
            self.landmarks[idx],
            paths=paths,
            load_paths=load,
        )

    @staticmethod
    def concat(parts: Sequence[FaceColumns]) -> FaceColumns:
        """Rows of every part in turn; identity names merged and labels mapped onto them."""
        names = sorted(set().union(*(part.names for part in parts)))
        position = {name: i for i, name in enumerate(names)}
        labels = [np.array([position[n] for n in part.names], np.int64)[part.labels] for part in parts]
        return FaceColumns(
            names,
            np.concatenate([np.zeros(0, np.int64), *labels]),
            np.concatenate([part.sizes for part in parts]),
            np.concatenate([part.mtimes for part in parts]),
            np.concatenate([part.boxes for part in parts]).reshape(-1, 4),
            np.concatenate([part.scores for part in parts]),
            np.concatenate([part.detected for part in parts]),
            np.concatenate([part.landmarks for part in parts]).reshape(-1, *LANDMARK_SHAPE),
            paths=[p for part in parts for p in part.paths],
        )

    @staticmethod
    def from_records(records: Sequence[FaceRecord]) -> FaceColumns:
        names = sorted({r.identity for r in records})
        position = {name: i for i, name in enumerate(names)}
        return FaceColumns(
            names,
            np.array([position[r.identity] for r in records], np.int64),
            np.array([r.size for r in records], np.int64),
            np.array([r.mtime_ns for r in records], np.int64),
            np.array([r.box if r.box is not None else (math.nan,) * 4 for r in records], np.float32).reshape(
                -1, 4
            ),
            np.array([r.score for r in records], np.float32),
            np.array([r.detected for r in records], bool),
            np.array(
                [r.landmarks if r.landmarks is not None else no_landmarks(1)[0] for r in records], np.float32
            ).reshape(-1, *LANDMARK_SHAPE),
            paths=[r.path for r in records],
        )


@dataclass
class FailureColumns:
    paths: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def items(self) -> list[Failure]:
        return [
            Failure(*row)
            for row in zip(self.paths, self.identities, self.sizes, self.mtimes, self.reasons, strict=True)
        ]

    @staticmethod
    def from_items(items: Iterable[Failure]) -> FailureColumns:
        out = FailureColumns()
        for f in items:
            out.paths.append(f.path)
            out.identities.append(f.identity)
            out.sizes.append(int(f.size))
            out.mtimes.append(int(f.mtime_ns))
            out.reasons.append(f.reason)
        return out
