"""`semihard-strict`: the FaceNet paper's rule, ||a−p||² < ||a−n||² < ||a−p||² + alpha."""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import Miner, anchor_positive_pairs, squared_distances
from facetool.miners.window import negatives_in_window


class StrictSemiHardMiner(Miner):
    """Per anchor-positive pair, a uniformly random negative farther than the positive but inside the margin."""

    name = "semihard-strict"
    description = "random negative with d(a,p) < d(a,n) < d(a,p) + margin (paper)"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        dist = squared_distances(embeddings)
        pairs = anchor_positive_pairs(labels)
        d_ap = dist.gather(1, pairs.members)
        upper = (d_ap + margin).clamp_min(0.0)
        return negatives_in_window(dist, labels, pairs, d_ap, upper, generator)
