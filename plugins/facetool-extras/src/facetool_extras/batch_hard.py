"""`batch-hard`: the triplet loss mined inside each batch of people (Hermans, Beyer and Leibe, 2017).

Every image of the batch is an anchor once, with its farthest positive and its nearest negative in the batch:
loss(a) = f(d(a, p_hardest) − d(a, n_hardest)), with f the soft margin log(1 + exp(s·x)) / s or the hinge
max(0, x + alpha). The batches come whole people at a time (`needs = "groups"`), so each anchor meets its
positives there; an anchor without a positive or a negative in its batch is left out of the mean. No mining
pass runs before the step: the hardest pair is found on the embeddings being trained, with their gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from facetool.config.base import StrictModel
from facetool.losses import Loss

TINY = 1e-12


class BatchHardSettings(StrictModel):
    """Batch-hard triplet loss."""

    margin: Literal["soft", "hinge"] = Field(
        "soft", description="soft: log(1 + exp(s·x)) / s; hinge: max(0, x + alpha) with the config's alpha."
    )
    scale: float = Field(1.0, gt=0.0, description="s of the soft margin (larger: closer to max(0, x)).")
    distance: Literal["euclidean", "squared"] = Field(
        "euclidean", description="Distance between embeddings: L2 or squared L2."
    )


def pairwise_distances(embeddings: Tensor, squared: bool) -> Tensor:
    """(N, N) squared or plain L2 distances between rows; exactly 0 on the diagonal, with finite gradients.

    Unlike the miners' in-place `squared_distances`, the norms come from the same Gram matrix as the products,
    so identical embeddings (a duplicated face) are exactly 0 apart rather than a rounding error's sqrt.
    """
    gram = embeddings @ embeddings.T
    norms = gram.diagonal()
    d2 = (norms[:, None] + norms[None, :] - 2.0 * gram).clamp_min(0.0)
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    d2 = d2.masked_fill(eye, 0.0)
    return d2 if squared else d2.clamp_min(TINY).sqrt().masked_fill(eye, 0.0)


def hardest(distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor: the farthest positive's distance, the nearest negative's, and whether both exist."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    negative = ~same
    far = distances.masked_fill(~positive, 0.0).amax(dim=1)
    top = distances.detach().amax() + 1.0
    near = distances.masked_fill(~negative, 0.0) + (~negative) * top
    return far, near.amin(dim=1), positive.any(dim=1) & negative.any(dim=1)


class BatchHardLoss(Loss):
    """Batch-hard triplet loss over P×K batches of people (soft margin by default)."""

    name = "batch-hard"
    description = "triplet loss of each image's hardest positive and negative in its batch of people"
    needs = "groups"
    Settings = BatchHardSettings

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        s = self.settings
        distances = pairwise_distances(embeddings, squared=s.distance == "squared")
        far, near, valid = hardest(distances, labels)
        gap = far - near
        if s.margin == "soft":
            per = F.softplus(s.scale * gap) / s.scale
            teaching = gap > 0
        else:
            per = (gap + self.margin).clamp_min(0.0)
            teaching = per > 0
        weight = valid.to(per.dtype)
        self.active = (teaching & valid).sum()
        return (per * weight).sum() / weight.sum().clamp_min(1.0)
