"""`semihard-strict`: the FaceNet paper's rule, ||a−p||² < ||a−n||² < ||a−p||² + alpha."""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import (
    Miner,
    anchor_positive_pairs,
    order_keys,
    select_in_window,
    sorted_negative_keys,
    squared_distances,
)


class StrictSemiHardMiner(Miner):
    """Random other-identity negative farther than the positive but inside the margin (FaceNet paper)."""

    name = "semihard-strict"
    description = "random negative with d(a,p) < d(a,n) < d(a,p) + margin (paper)"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        dist = squared_distances(embeddings)
        pairs = anchor_positive_pairs(labels)
        neg_keys, neg_idx = sorted_negative_keys(dist, labels)
        d_ap = dist.gather(1, pairs.members).contiguous()
        low = torch.searchsorted(neg_keys, order_keys(d_ap), right=True)
        threshold = (d_ap + margin).clamp_min(0.0)
        high = torch.searchsorted(neg_keys, order_keys(threshold), right=False)
        return select_in_window(pairs, low, high, neg_idx, generator)
