"""`distance-weighted`: negatives sampled with probability ∝ 1/q(d) (Wu et al. 2017, "Sampling matters").

For points spread uniformly on the unit sphere in n dimensions, pairwise distances have density
q(d) ∝ d^(n−2) · (1 − d²/4)^((n−3)/2). Sampling negatives with weight 1/q(d) spreads them evenly over distances
instead of concentrating them around √2. As in the paper, d is clipped below at `cutoff` (0.5), so
near-duplicates do not dominate through huge weights. Weights are computed in log space per anchor and
normalised.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from facetool.miners.base import Miner, anchor_positive_pairs, squared_distances

MIN_DISTANCE = 0.5
EPS = 1e-6


class DistanceWeightedSettings(BaseModel):
    """The `[miner]` settings of `distance-weighted`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cutoff: float = Field(
        MIN_DISTANCE, gt=0.0, lt=2.0, description="Distances below this count as this (the paper's 0.5)."
    )


def inverse_density_log_weights(squared: Tensor, dim: int, cutoff: float = MIN_DISTANCE) -> Tensor:
    """log(1/q(d)) from squared distances d² between unit vectors in `dim` dimensions, d clipped at `cutoff`.

    log q(d) = (n−2)/2 · log d² + (n−3)/2 · log(1 − d²/4); d² is capped just below 4 to keep the log finite.
    """
    d2 = squared.clamp(cutoff**2, 4.0 - EPS)
    log_w = torch.log1p(d2 * -0.25).mul_(-(dim - 3.0) / 2.0)
    return log_w.sub_(d2.log_().mul_((dim - 2.0) / 2.0))


class DistanceWeightedMiner(Miner):
    """Distance-weighted sampling (Wu et al. 2017): negative drawn with probability ∝ 1/q(d)."""

    name = "distance-weighted"
    description = "negative sampled with probability ∝ 1/q(d), d clipped at `cutoff` (Wu et al. 2017)"
    Settings: ClassVar[type[BaseModel]] = DistanceWeightedSettings

    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        cutoff = float(self.settings.cutoff)
        log_w = inverse_density_log_weights(squared_distances(embeddings), embeddings.shape[1], cutoff)
        same = labels[:, None] == labels[None, :]
        log_w.masked_fill_(same, float("-inf"))
        log_w.masked_fill_(log_w.isnan(), float("-inf"))
        has_negative = torch.isfinite(log_w).any(dim=1)
        pairs = anchor_positive_pairs(labels)
        keep = pairs.valid & has_negative[:, None]
        rows = keep.any(dim=1).nonzero()[:, 0]
        empty = torch.empty(0, dtype=torch.long, device=embeddings.device)
        if rows.numel() == 0:
            return empty, empty.clone(), empty.clone()
        log_w = log_w[rows]
        weights = log_w.sub_(log_w.amax(dim=1, keepdim=True)).exp_()
        k = pairs.members.shape[1]
        if generator is not None and generator.device != weights.device:
            draws = torch.multinomial(weights.to(generator.device), k, replacement=True, generator=generator)
            draws = draws.to(weights.device)
        else:
            draws = torch.multinomial(weights, k, replacement=True, generator=generator)
        negatives = torch.full_like(pairs.members, -1)
        negatives[rows] = draws
        anchors = keep.nonzero()[:, 0]
        return anchors, pairs.members[keep], negatives[keep]
