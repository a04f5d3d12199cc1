"""`random`: any other-identity negative, uniformly."""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import Miner, anchor_positive_pairs, sample_in_range


class RandomMiner(Miner):
    """Uniformly random other-identity negative for every anchor-positive pair (a baseline)."""

    name = "random"
    description = "any other-identity negative (baseline)"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        pairs = anchor_positive_pairs(labels)
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        order = torch.argsort(inverse, stable=True)
        starts = (torch.cumsum(counts, 0) - counts)[inverse]
        sizes = counts[inverse]
        num_negatives = labels.numel() - sizes
        keep = pairs.valid & (num_negatives > 0)[:, None]
        anchors = keep.nonzero()[:, 0]
        zero = torch.zeros_like(anchors)
        k = sample_in_range(zero, num_negatives[anchors], generator)
        position = torch.where(k < starts[anchors], k, k + sizes[anchors])
        return anchors, pairs.members[keep], order[position]
