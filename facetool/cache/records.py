"""Face records, failures, the cache format, and their columnar metadata tables."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
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


@dataclass
class FaceColumns:
    """Metadata of face records, one entry per record, in columns."""

    paths: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mtimes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    detected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def take(self, idx: np.ndarray) -> FaceColumns:
        return FaceColumns(
            [self.paths[i] for i in idx],
            [self.identities[i] for i in idx],
            self.sizes[idx],
            self.mtimes[idx],
            self.boxes[idx],
            self.scores[idx],
            self.detected[idx],
        )

    @staticmethod
    def concat(parts: Sequence[FaceColumns]) -> FaceColumns:
        return FaceColumns(
            [p for part in parts for p in part.paths],
            [p for part in parts for p in part.identities],
            np.concatenate([part.sizes for part in parts]).astype(np.int64),
            np.concatenate([part.mtimes for part in parts]).astype(np.int64),
            np.concatenate([part.boxes for part in parts]).astype(np.float32).reshape(-1, 4),
            np.concatenate([part.scores for part in parts]).astype(np.float32),
            np.concatenate([part.detected for part in parts]).astype(bool),
        )

    @staticmethod
    def from_records(records: Sequence[FaceRecord]) -> FaceColumns:
        return FaceColumns(
            [r.path for r in records],
            [r.identity for r in records],
            np.array([r.size for r in records], np.int64),
            np.array([r.mtime_ns for r in records], np.int64),
            np.array([r.box if r.box is not None else (math.nan,) * 4 for r in records], np.float32).reshape(
                -1, 4
            ),
            np.array([r.score for r in records], np.float32),
            np.array([r.detected for r in records], bool),
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
