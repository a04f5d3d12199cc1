"""The training data as the loop sees it: a `FaceSource` of training identities and one of validation identities.

`load_training_data` opens the cache as a source (preloaded or streamed, as `data.preload` and the memory
available decide; see `facetool.data.choose`), leaves out people with one image (with extra negatives it keeps
them, as such negatives), holds out the validation identities and, under several processes, keeps this rank's
share of the training people. All of that works on labels alone: no face is decoded before the first round
asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetool.cache import open_cache
from facetool.cache.origin import recorded
from facetool.config.train import TrainConfig
from facetool.data.choose import SourceChoice, open_face_source
from facetool.data.source import FaceSource
from facetool.data.split import drop_small_identities, split_identities
from facetool.errors import FacetoolError
from facetool.models.export import face_crop_from_meta
from facetool.training.distributed import Ranks

TrainingData = FaceSource


@dataclass
class PreparedData:
    """The split data of a run: training faces (this rank's share), validation faces, people left out, choice,
    the names of all training identities (every rank's), and `classes`, the index into those names of each of
    this rank's labels (so a class-based loss sees one class per person across every rank)."""

    train: FaceSource
    val: FaceSource | None
    dropped: int
    choice: SourceChoice
    train_identities: list[str]
    classes: np.ndarray

    def close(self) -> None:
        """Release both sources (a streamed one's worker processes stop with the last)."""
        self.train.close()
        if self.val is not None:
            self.val.close()


def _with_single_image_people(source: FaceSource, train_set: FaceSource) -> FaceSource:
    """`train_set`'s people and every person of `source` with a single image, in `source`'s order."""
    chosen = set(train_set.identities)
    counts = source.counts()
    keep = [i for i, name in enumerate(source.identities) if counts[i] == 1 or name in chosen]
    return source.subset(keep)


def load_training_data(
    cache: Path,
    config: TrainConfig,
    device: torch.device,
    log: Callable[[str], None],
    ranks: Ranks | None = None,
) -> PreparedData:
    """Open the face cache as a source and split it into this run's training and validation identities."""
    ranks = ranks or Ranks()
    source, choice = open_face_source(
        cache,
        mode=config.data.preload,
        device=device,
        workers=config.data.workers,
        worker_timeout_s=config.data.worker_timeout_s,
    )
    log(f"faces: {choice.reason}")
    views: list[FaceSource] = [source]
    try:
        faces, dropped = drop_small_identities(source)
        views.append(faces)
        if dropped and not config.extra_negatives:
            log(f"left out {dropped} identities with fewer than 2 images")
        if faces.num_identities < 2:
            raise FacetoolError(
                f"{cache}: training needs at least 2 identities with 2 or more images, found {faces.num_identities}"
            )
        train_set, val_set = split_identities(faces, config.validation.fraction, config.seed)
        if config.extra_negatives and dropped:
            views.append(train_set)
            train_set = _with_single_image_people(source, train_set)
            log(f"{dropped} identities with one image train as extra negatives only")
            dropped = 0
        everyone = train_set.identities
        classes = np.arange(len(everyone), dtype=np.int64)
        if ranks.distributed:
            views.append(train_set)
            if train_set.num_identities < 2 * ranks.world_size:
                raise FacetoolError(
                    f"{cache}: {train_set.num_identities} training identities cannot give each of "
                    f"{ranks.world_size} processes the 2 people a round needs"
                )
            train_set = train_set.shard(ranks.rank, ranks.world_size)
            classes = classes[ranks.rank :: ranks.world_size]
    except BaseException:
        for view in views:
            view.close()
        raise
    for view in views:
        if view is not train_set and view is not val_set:
            view.close()
    return PreparedData(train_set, val_set, dropped, choice, everyone, classes)


def training_face_crop(cache_path: Path) -> dict:
    """How the training cache's faces were detected, cropped and aligned, as a model card's `face_crop`: kept
    in every checkpoint, so commands that crop photos for it crop them as training did."""
    with open_cache(cache_path) as cache:
        return face_crop_from_meta(recorded(cache.meta), f"face cache {cache_path.name}")
