"""The gallery index file of `facetool gallery build`: every face's embedding, one centre per identity, and the
digest of the model that made them, so a gallery is never searched with another model's probes.

Layout (HDF5, written whole to a temporary name and renamed): attrs `format` = "facetool-gallery",
`format_version`, `model_sha256`, `model_name`, `metric`, `flip`, `meta` (JSON); datasets `embeddings` (N x D
float32, faces grouped by identity), `labels` (N int64, index into `identities`), `paths` and `identities`
(UTF-8 strings), `centres` (I x D float32, the normalised mean of each identity's faces), `counts` (I int64).
A face costs 4 x D bytes of embedding (2 KiB at D = 512) plus its path; search reads `chunk` faces at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from facetool.cache.store import h5_errors
from facetool.errors import CacheError
from facetool.files import atomic_output

GALLERY_FORMAT = "facetool-gallery"
GALLERY_VERSION = 1
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class GalleryModel:
    """What a gallery records of the model that embedded it."""

    sha256: str
    name: str
    metric: str
    flip: bool


def is_gallery_file(path: Path | str) -> bool:
    """Whether `path` is an HDF5 file marked as a facetool gallery (a face cache is not)."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == GALLERY_FORMAT
    except (OSError, ValueError):
        return False


def write_gallery(
    path: Path | str,
    *,
    embeddings: np.ndarray,
    labels: np.ndarray,
    paths: list[str],
    identities: list[str],
    model: GalleryModel,
    meta: dict[str, Any],
) -> None:
    """Write the index of faces `embeddings` (unit rows) labelled `labels` (index into `identities`)."""
    order = np.argsort(labels, kind="stable")
    embeddings, labels = embeddings[order].astype(np.float32), labels[order].astype(np.int64)
    paths = [paths[i] for i in order]
    counts = np.bincount(labels, minlength=len(identities)).astype(np.int64)
    sums = np.zeros((len(identities), embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    centres = (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            {
                "format": GALLERY_FORMAT,
                "format_version": GALLERY_VERSION,
                "model_sha256": model.sha256,
                "model_name": model.name,
                "metric": model.metric,
                "flip": model.flip,
                "meta": json.dumps(meta),
            }
        )
        f.create_dataset(
            "embeddings", data=embeddings, chunks=(min(4096, max(1, len(labels))), embeddings.shape[1])
        )
        f.create_dataset("labels", data=labels)
        f.create_dataset("paths", data=np.array(paths, dtype=object), dtype=_STR)
        f.create_dataset("identities", data=np.array(identities, dtype=object), dtype=_STR)
        f.create_dataset("centres", data=centres)
        f.create_dataset("counts", data=counts)


class Gallery:
    """An opened gallery index; `chunks` reads the face embeddings a bounded number at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheError(f"{self.path}: gallery file not found")
        with h5_errors(self.path):
            self.file = h5py.File(self.path, "r")
            attrs = self.file.attrs
            if attrs.get("format") != GALLERY_FORMAT:
                self.file.close()
                raise CacheError(
                    f"{self.path}: not a facetool gallery (make one with `facetool gallery build`)"
                )
            if int(attrs.get("format_version", 0)) != GALLERY_VERSION:
                self.file.close()
                raise CacheError(
                    f"{self.path}: gallery version {attrs.get('format_version')!r} is not supported"
                )
            self.model = GalleryModel(
                str(attrs["model_sha256"]),
                str(attrs["model_name"]),
                str(attrs["metric"]),
                bool(attrs["flip"]),
            )
            self.meta = json.loads(attrs["meta"])
            self.identities = [s.decode("utf-8") for s in self.file["identities"][()]]
            self.labels = np.asarray(self.file["labels"][()], np.int64)
            self.centres = np.asarray(self.file["centres"][()], np.float32)
            self.counts = np.asarray(self.file["counts"][()], np.int64)
            self.embedding_dim = int(self.file["embeddings"].shape[1])
            if self.file["embeddings"].shape[0] != len(self.labels) or (
                len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.identities))
            ):
                raise CacheError(f"{self.path}: truncated or corrupted gallery (labels do not fit)")

    def __len__(self) -> int:
        return len(self.labels)

    def paths(self) -> list[str]:
        """Every face's path, in the index's order."""
        with h5_errors(self.path):
            return [s.decode("utf-8") for s in self.file["paths"][()]]

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(embeddings, labels) of `size` faces at a time, read from the file as needed."""
        with h5_errors(self.path):
            data = self.file["embeddings"]
            for start in range(0, len(self.labels), size):
                yield np.asarray(data[start : start + size], np.float32), self.labels[start : start + size]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
