"""The training data as the loop sees it: identity names, one label per image, and `fetch(rows, device)`.

`TrainingData` is the seam a streamed face source plugs into; `FaceSetData` backs it with a decoded FaceSet
placed in device or host memory. `load_training_data` reads the cache, leaves out people with one image and
holds out the validation identities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from facetool.config.train import TrainConfig
from facetool.data.faceset import FaceSet, drop_small_identities, load_faceset, split_identities
from facetool.data.preload import gather, place_faceset
from facetool.errors import FacetoolError


class TrainingData(Protocol):
    """What one selection round needs from the training images."""

    identities: list[str]
    labels: np.ndarray

    def fetch(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """(n, S, S, 3) uint8 faces of `rows`, in that order, on `device`."""
        ...


class FaceSetData:
    """TrainingData over a decoded FaceSet (in device or pinned host memory)."""

    def __init__(self, faces: FaceSet) -> None:
        self.faces = faces
        self.identities = faces.identities
        self.labels = faces.labels.cpu().numpy().astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def fetch(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        return gather(self.faces, torch.as_tensor(rows), device)


@dataclass
class PreparedData:
    """The split data of a run: training images, held-out validation images, people left out, placement."""

    train: FaceSetData
    val: FaceSet | None
    dropped: int
    where: str


def load_training_data(
    cache: Path, config: TrainConfig, device: torch.device, log: Callable[[str], None]
) -> PreparedData:
    """Read the face cache and split it into training and validation identities for this run."""
    faces, dropped = drop_small_identities(load_faceset(cache))
    if dropped:
        log(f"left out {dropped} identities with fewer than 2 images")
    if faces.num_identities < 2:
        raise FacetoolError(
            f"{cache}: training needs at least 2 identities with 2 or more images, found {faces.num_identities}"
        )
    train_set, val_set = split_identities(faces, config.validation.fraction, config.seed)
    placed, where = place_faceset(train_set, device, config.data.preload)
    if val_set is not None and where == "device":
        val_set = val_set.to(device)
    return PreparedData(FaceSetData(placed), val_set, dropped, where)
