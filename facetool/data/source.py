"""Where training faces come from: a face cache's rows, read by row on demand or decoded once up front.

A `FaceSource` is labels and identities (from the cache metadata, no face decoded) plus a map from its rows
to the cache's rows. `subset` narrows it to some identities by relabelling and re-mapping alone, so the
identity split and each rank's share cost no decoding. `fetch(rows, device)` returns those faces as one
uint8 tensor; `prefetch(rows)` says which rows come next. Both implementations decode with the cache's own
`read_faces`, so for the same rows they return identical tensors.

Views made by `subset` share the reader of the source they came from; it is shut down when the last view
is closed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np
import torch

from facetool.cache import FaceCache


class Backend:
    """What reads the faces of a cache; shared by a source and its subsets, closed with the last of them."""

    def __init__(self, cache_path: Path) -> None:
        self.cache_path = cache_path
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.shutdown()

    def shutdown(self) -> None:
        """Free what the backend holds (worker processes, buffers)."""


class CacheReader(Backend):
    """The preloaded sources' reader: the cache opened once (the snapshot their labels came from), kept open
    until the last view closes, so faces decoded rounds apart still come from the same file and journal."""

    def __init__(self, cache: FaceCache) -> None:
        super().__init__(cache.path)
        self._cache: FaceCache | None = cache
        self._read_lock = threading.Lock()

    def read_faces(self, cache_rows: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 faces of the cache's rows `cache_rows`, in the order given."""
        with self._read_lock:
            if self._cache is None:
                raise RuntimeError(f"{self.cache_path}: the face source was closed")
            return self._cache.read_faces(cache_rows)

    def shutdown(self) -> None:
        with self._read_lock:
            cache, self._cache = self._cache, None
        if cache is not None:
            cache.close()


class FaceSource:
    """Faces of a cache addressed by row; rows 0..N-1 of this source are the cache rows `cache_rows`."""

    def __init__(
        self,
        backend: Backend,
        cache_rows: np.ndarray,
        labels: np.ndarray,
        identities: list[str],
        image_size: int,
    ) -> None:
        self._backend = backend
        self.cache_rows = np.asarray(cache_rows, np.int64)
        self.labels = np.asarray(labels, np.int64)
        self.identities = identities
        self.image_size = image_size
        self._closed = False
        backend.acquire()

    @property
    def cache_path(self) -> Path:
        return self._backend.cache_path

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    @property
    def decoded_bytes(self) -> int:
        """What all faces of this source take decoded (uint8 RGB)."""
        return len(self) * self.image_size * self.image_size * 3

    def counts(self) -> np.ndarray:
        """Images per identity, indexed like `identities`."""
        return np.bincount(self.labels, minlength=len(self.identities))

    def _view(self, keep: np.ndarray, labels: np.ndarray, identities: list[str]) -> Self:
        """A source over rows `keep` of this one (same backend), with the given labels."""
        raise NotImplementedError

    def subset(self, identity_ids: np.ndarray | list[int]) -> Self:
        """Only the rows of the given identities, relabelled 0..k-1 in the order given; nothing is decoded."""
        identity_ids = np.asarray(identity_ids, dtype=np.int64).reshape(-1)
        remap = np.full(len(self.identities), -1, dtype=np.int64)
        remap[identity_ids] = np.arange(len(identity_ids))
        keep = np.flatnonzero(remap[self.labels] >= 0)
        return self._view(keep, remap[self.labels[keep]], [self.identities[i] for i in identity_ids])

    def shard(self, rank: int, world_size: int) -> Self:
        """This rank's people: every `world_size`-th identity from `rank` on, so no rank holds the whole set."""
        return self.subset(np.arange(rank, self.num_identities, world_size))

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range for a face source of {len(self)} faces")
        return rows

    def fetch(self, rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
        """(n, S, S, 3) uint8 faces of `rows` on `device`, in the order given."""
        raise NotImplementedError

    def prefetch(self, rows: np.ndarray) -> None:
        """A hint that `rows` are fetched next; a streamed source starts reading them now."""

    def close(self) -> None:
        """Release this view; the reader goes when its last view does. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._backend.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_device(faces: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`faces` on `device`; from host to CUDA through pinned memory, asynchronously."""
    device = torch.device(device)
    if faces.device == device:
        return faces
    if faces.device.type == "cpu" and device.type == "cuda" and not faces.is_pinned():
        faces = faces.pin_memory()
    return faces.to(device, non_blocking=True)


class PreloadedSource(FaceSource):
    """Decodes its rows once, on first use, into one tensor on `place_on` (host memory, pinned with `pin`).

    A subset of a decoded source takes its faces from the decoded tensor; an undecoded one decodes only its
    own rows when first used, so a rank or a validation split never holds more than its share. `read` decodes
    some rows without keeping them, for a consumer that keeps its own copy (faces resized once, each on its
    first round).
    """

    def __init__(
        self,
        backend: CacheReader,
        cache_rows: np.ndarray,
        labels: np.ndarray,
        identities: list[str],
        image_size: int,
        place_on: torch.device | str = "cpu",
        pin: bool = False,
        faces: torch.Tensor | None = None,
    ) -> None:
        super().__init__(backend, cache_rows, labels, identities, image_size)
        self._reader = backend
        self.place_on = torch.device(place_on)
        self.pin = pin
        self._faces = faces

    def _view(self, keep: np.ndarray, labels: np.ndarray, identities: list[str]) -> PreloadedSource:
        faces = None
        if self._faces is not None:
            faces = self._faces.index_select(0, torch.as_tensor(keep, device=self._faces.device))
        return PreloadedSource(
            self._reader,
            self.cache_rows[keep],
            labels,
            identities,
            self.image_size,
            self.place_on,
            self.pin,
            faces,
        )

    @property
    def faces(self) -> torch.Tensor:
        """Every face of this source, decoded (the first access reads them)."""
        if self._faces is None:
            self._faces = self._decode(np.arange(len(self)))
            if self.pin and self.place_on.type == "cpu":
                self._faces = self._faces.pin_memory()
        return self._faces

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """(n, S, S, 3) uint8 faces of `rows` on `place_on`, in the order given; decoded now and not kept,
        unless every face is decoded already."""
        rows = self._check_rows(rows)
        if self._faces is not None:
            return self._faces.index_select(0, torch.as_tensor(rows, device=self._faces.device))
        return self._decode(rows)

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        """The faces of `rows`, read from the cache in its row order, on `place_on` (unpinned)."""
        order = np.argsort(self.cache_rows[rows], kind="stable")
        decoded = self._reader.read_faces(self.cache_rows[rows[order]])
        faces = torch.empty((len(rows), self.image_size, self.image_size, 3), dtype=torch.uint8)
        faces[torch.as_tensor(order)] = torch.from_numpy(decoded)
        del decoded
        return faces.to(self.place_on) if self.place_on.type == "cuda" else faces

    def prefetch(self, rows: np.ndarray) -> None:
        self.faces  # noqa: B018 - decoding is the preloaded source's only preparation

    def fetch(self, rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
        rows = self._check_rows(rows)
        faces = self.faces
        picked = faces.index_select(0, torch.as_tensor(rows, device=faces.device))
        return to_device(picked, device)

    def close(self) -> None:
        super().close()
        self._faces = None


def batches(
    source: FaceSource, size: int, device: torch.device | str
) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Every face of `source` in order, `size` at a time, with its labels; the next batch is read meanwhile.

    Validation and embedding go through this, so they hold one or two batches, never the whole source.
    """
    starts = range(0, len(source), size)
    for k, start in enumerate(starts):
        rows = np.arange(start, min(start + size, len(source)))
        if k + 1 < len(starts):
            source.prefetch(np.arange(starts[k + 1], min(starts[k + 1] + size, len(source))))
        yield source.fetch(rows, device), source.labels[rows]
