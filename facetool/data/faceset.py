"""Faces held in memory for training: one uint8 tensor and integer labels, loaded once from a face cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetool.cache import open_cache
from facetool.data.split import drop_small_identities, split_identities
from facetool.errors import FacetoolError

__all__ = ["FaceSet", "drop_small_identities", "load_faceset", "split_identities"]


@dataclass(frozen=True)
class FaceSet:
    """(N, S, S, 3) uint8 RGB faces with labels indexing `identities`; moved to a device as a whole."""

    faces: torch.Tensor
    labels: torch.Tensor
    identities: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.faces.shape[1])

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    def counts(self) -> np.ndarray:
        """Images per identity, indexed like `identities`."""
        return np.bincount(self.labels.cpu().numpy(), minlength=len(self.identities))

    def to(self, device: torch.device | str) -> FaceSet:
        """The same faces on `device` (uint8, so the copy is a quarter of float size)."""
        return FaceSet(self.faces.to(device), self.labels.to(device), self.identities)

    def subset(self, identity_ids: np.ndarray | list[int]) -> FaceSet:
        """Only the images of the given identities, relabelled 0..k-1 in the order given."""
        identity_ids = np.asarray(identity_ids, dtype=np.int64)
        labels = self.labels.cpu().numpy()
        remap = np.full(len(self.identities), -1, dtype=np.int64)
        remap[identity_ids] = np.arange(len(identity_ids))
        keep = np.flatnonzero(remap[labels] >= 0)
        keep_t = torch.as_tensor(keep, device=self.faces.device)
        return FaceSet(
            self.faces.index_select(0, keep_t),
            torch.as_tensor(remap[labels[keep]], device=self.labels.device),
            [self.identities[i] for i in identity_ids],
        )


def load_faceset(cache_path: Path | str) -> FaceSet:
    """Read every face of a cache into memory; CacheError from the cache module names a bad file."""
    with open_cache(cache_path) as cache:
        faces = np.ascontiguousarray(cache.read_faces())
        labels = np.asarray(cache.labels, dtype=np.int64)
        identities = list(cache.identities)
    if len(labels) == 0:
        raise FacetoolError(f"{cache_path}: the face cache holds no faces")
    return FaceSet(torch.from_numpy(faces), torch.from_numpy(labels), identities)
