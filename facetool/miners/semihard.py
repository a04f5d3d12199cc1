"""`semihard`: the classic FaceNet selection (a random negative with ||a−n||² − ||a−p||² < alpha)."""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import Miner, anchor_positive_pairs, squared_distances
from facetool.miners.window import negatives_in_window


class SemiHardMiner(Miner):
    """Per anchor-positive pair, a uniformly random other-identity negative with d(a,n) < d(a,p) + alpha.

    This is facenet's `select_triplets` (anchor = earlier image, positive = later image of the same person),
    distances squared, the threshold d(a,p) + alpha formed in float32; pairs with no such negative are skipped.
    """

    name = "semihard"
    description = "random negative with d(a,n) < d(a,p) + margin (classic FaceNet)"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        dist = squared_distances(embeddings)
        pairs = anchor_positive_pairs(labels)
        upper = (dist.gather(1, pairs.members) + margin).clamp_min(0.0)
        return negatives_in_window(dist, labels, pairs, None, upper, generator)
