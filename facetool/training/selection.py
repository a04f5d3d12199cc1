"""One selection round of FaceNet training: sample people → fetch and augment their faces → embed → mine.

A run whose loss needs no mined triplets (a class-based loss, or one that mines inside its batch) skips the
embedding pass and the mining (`mine=False`): its round is the augmented images of the sampled people with
their labels. The mining margin is the loss's own (`engine.criterion.margin`), the one the steps train with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facetool.data.augment import Augmenter
from facetool.data.resized import ResizedFaces, resize_once
from facetool.data.sampling import PeopleSampler
from facetool.miners import Miner, MiningResult
from facetool.training.engine import Engine
from facetool.training.sources import TrainingData

RESIZE_ONCE = True
"""Preloaded faces are resized to the training input size once, when that takes at most half the memory left
where they live, instead of in every round: the same inputs, bit for bit, in less time."""


@dataclass
class Round:
    """The augmented inputs of one round, their labels (on the device, and a host copy), and the triplets mined
    among them (indices into `inputs`; None when the loss needs no triplets). `rows` and `augment_state` (the
    augmentation generator's state before the round) rebuild the same inputs (`Selection.rebuild`)."""

    inputs: torch.Tensor
    mined: MiningResult | None
    labels: torch.Tensor | None = None
    host_labels: np.ndarray | None = None
    rows: np.ndarray | None = None
    augment_state: torch.Tensor | None = None

    @property
    def images(self) -> int:
        return len(self.inputs)


class Selection:
    """Draws rounds from the training data with `sampler` and `augment`, embedding with `engine` to mine."""

    def __init__(
        self,
        data: TrainingData,
        engine: Engine,
        sampler: PeopleSampler,
        augment: Augmenter,
        *,
        mine: bool = True,
        classes: np.ndarray | None = None,
    ) -> None:
        self.data = data
        self.classes = np.arange(len(data.identities)) if classes is None else np.asarray(classes)
        self.engine = engine
        self.sampler = sampler
        self.augment = augment
        self.mine = mine
        self.resized: ResizedFaces | None = None

    def resize_once(self, enabled: bool | None = None) -> str:
        """Resize every training face to the augmenter's working size once, each on its first round, when that
        fits (and `enabled`, RESIZE_ONCE by default); the log line."""
        self.resized, note = resize_once(self.data, self.augment, RESIZE_ONCE if enabled is None else enabled)
        return note

    @property
    def people_per_round(self) -> int:
        return self.sampler.people_per_batch

    def prefetch(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the next round's rows and have the source start reading them (unless the faces resized once
        serve them: those decode and resize a face on its first fetch); pass them to the next call."""
        rows = self.sampler.sample(rng)
        if self.resized is None:
            self.data.prefetch(rows)
        return rows

    def __call__(
        self,
        miner: Miner,
        rng: np.random.Generator,
        generator: torch.Generator,
        rows: np.ndarray | None = None,
    ) -> Round:
        if rows is None:
            rows = self.sampler.sample(rng)
        if not self.mine:
            inputs, labels, host_labels = self._inputs(rows, generator)
            return Round(inputs, None, labels, host_labels)
        state = generator.get_state()
        inputs, labels, host_labels = self._inputs(rows, generator)
        mined = miner(self.engine.embed_inputs(inputs), labels, self.engine.criterion.margin)
        return Round(inputs, mined, labels, host_labels, rows, state)

    def _inputs(
        self, rows: np.ndarray, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """The augmented faces of `rows`, their training-class labels on the device and on the host."""
        device = self.engine.device
        if self.resized is None:
            inputs = self.augment(self.data.fetch(rows, device), generator)
        else:
            inputs = self.augment.from_working(self.resized.fetch(rows, device), generator)
        host_labels = self.classes[self.data.labels[rows]]
        return inputs, torch.as_tensor(host_labels, device=device), host_labels

    def rebuild(self, rows: np.ndarray, augment_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and labels of an earlier round of `rows`, augmented from the generator state it began with."""
        generator = torch.Generator(device=self.engine.device)
        generator.set_state(augment_state)
        inputs, labels, _ = self._inputs(np.asarray(rows), generator)
        return inputs, labels
