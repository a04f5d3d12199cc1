"""`random`: any other-identity negative, uniformly."""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import Miner, anchor_positive_pairs, uniform_negatives


class RandomMiner(Miner):
    """Uniformly random other-identity negative for every anchor-positive pair (a baseline)."""

    name = "random"
    description = "any other-identity negative (baseline)"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        pairs = anchor_positive_pairs(labels)
        anchors = pairs.anchors
        negatives = uniform_negatives(labels, anchors, 1, generator)[:, 0]
        keep = labels[negatives] != labels[anchors]
        return anchors[keep], pairs.positives[keep], negatives[keep]
