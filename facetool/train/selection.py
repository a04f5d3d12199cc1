"""One selection round of FaceNet training: sample people → fetch and augment their faces → embed → mine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facetool.config.train import TrainConfig
from facetool.data.augment import Augmenter
from facetool.data.sampling import PeopleSampler
from facetool.miners import Miner, MiningResult
from facetool.train.data import TrainingData
from facetool.train.engine import Engine


@dataclass
class Round:
    """The augmented inputs of one round and the triplets mined among them (indices into `inputs`)."""

    inputs: torch.Tensor
    mined: MiningResult

    @property
    def images(self) -> int:
        return len(self.inputs)


class Selection:
    """Draws rounds from the training data with the run's sampler and augmentation, embedding with `engine`."""

    def __init__(self, data: TrainingData, engine: Engine, config: TrainConfig) -> None:
        self.data = data
        self.engine = engine
        self.sampler = PeopleSampler(data.labels, config.people_per_batch, config.images_per_person)
        self.augment = Augmenter(config.augment, config.image_size)
        self.margin = config.alpha

    @property
    def people_per_round(self) -> int:
        return self.sampler.people_per_batch

    def prefetch(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the next round's rows and have the source start reading them; pass them to the next call."""
        rows = self.sampler.sample(rng)
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
        device = self.engine.device
        inputs = self.augment(self.data.fetch(rows, device), generator)
        labels = torch.as_tensor(self.data.labels[rows], device=device)
        mined = miner(self.engine.embed_inputs(inputs), labels, self.margin)
        return Round(inputs, mined)
