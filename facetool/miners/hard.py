"""`hard`: the closest other-identity negative of each anchor."""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import Miner, anchor_positive_pairs, squared_distances


class HardMiner(Miner):
    """Hardest negative: the other-identity image closest to the anchor, for every anchor-positive pair."""

    name = "hard"
    description = "the closest other-identity negative"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        dist = squared_distances(embeddings)
        same = labels[:, None] == labels[None, :]
        closest, hardest = dist.masked_fill(same, float("inf")).min(dim=1)
        pairs = anchor_positive_pairs(labels)
        keep = pairs.valid & torch.isfinite(closest)[:, None]
        anchors = keep.nonzero()[:, 0]
        return anchors, pairs.members[keep], hardest[anchors]
