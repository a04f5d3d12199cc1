"""`semihard`: the classic FaceNet selection (a random negative with ||a−n||² − ||a−p||² < alpha)."""

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


class SemiHardMiner(Miner):
    """Random other-identity negative with ||a−n||² < ||a−p||² + alpha, per pair (classic FaceNet code)."""

    name = "semihard"
    description = "random negative with d(a,n) < d(a,p) + margin (classic FaceNet)"

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        dist = squared_distances(embeddings)
        pairs = anchor_positive_pairs(labels)
        neg_keys, neg_idx = sorted_negative_keys(dist, labels)
        d_ap = dist.gather(1, pairs.members)
        threshold = (d_ap + margin).clamp_min(0.0)
        high = torch.searchsorted(neg_keys, order_keys(threshold), right=False)
        return select_in_window(pairs, torch.zeros_like(high), high, neg_idx, generator)
