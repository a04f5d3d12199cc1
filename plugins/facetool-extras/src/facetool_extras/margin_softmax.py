"""Margin-based softmax losses over learned class centres: `arcface`, `cosface`, and `arcface-triplet`.

Every training identity gets a centre W_j on the unit sphere; the logit of class j is s·cos θ_j with
cos θ_j = <x, W_j / |W_j|>. The target class's logit carries a margin: ArcFace adds m to the angle,
s·cos(θ_y + m); CosFace subtracts it from the cosine, s·(cos θ_y − m). The loss is the cross-entropy of
these logits. Where θ_y + m would pass π, ArcFace uses cos θ_y − m·sin m instead, so the target logit keeps
falling as θ_y grows (the monotonic fallback of the ArcFace reference code).

The centres are a parameter of the loss module: they join the optimizer, are saved in the checkpoint's
`loss` state, and never reach the exported embedding model.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from facetool.config.base import StrictModel
from facetool.losses import Loss
from facetool.losses.triplet import triplet_losses

INIT_STD = 0.01
COS_LIMIT = 1.0 - 1e-7


class ArcFaceSettings(StrictModel):
    """ArcFace: additive angular margin."""

    scale: float = Field(64.0, gt=0.0, description="Logit scale s.")
    margin: float = Field(0.5, ge=0.0, lt=math.pi / 2, description="Angular margin m in radians.")


class CosFaceSettings(StrictModel):
    """CosFace: additive cosine margin."""

    scale: float = Field(64.0, gt=0.0, description="Logit scale s.")
    margin: float = Field(0.35, ge=0.0, lt=1.0, description="Cosine margin m.")


def arcface_target(cos: Tensor, margin: float) -> Tensor:
    """cos(θ + m) of target cosines, with cos θ − m·sin m where θ + m > π."""
    sin = (1.0 - cos * cos).clamp_min(0.0).sqrt()
    shifted = cos * math.cos(margin) - sin * math.sin(margin)
    return torch.where(cos > math.cos(math.pi - margin), shifted, cos - margin * math.sin(margin))


class MarginSoftmax(Loss):
    """Cross-entropy over s·cos θ with a margin on the target class; subclasses define `target`."""

    needs = "labels"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.centres = nn.Parameter(torch.randn(self.num_classes, self.embedding_dim) * INIT_STD)

    def target(self, cos: Tensor) -> Tensor:
        """The target class's cosine with the margin applied."""
        raise NotImplementedError

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(N, C) scaled logits with the margin on each row's label."""
        cos = (embeddings.float() @ F.normalize(self.centres, dim=1).T).clamp(-COS_LIMIT, COS_LIMIT)
        rows = torch.arange(len(labels), device=labels.device)
        with_margin = cos.index_put((rows, labels), self.target(cos[rows, labels]))
        return self.settings.scale * with_margin

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


class ArcFaceLoss(MarginSoftmax):
    """ArcFace (additive angular margin): cross-entropy of s·cos(θ_y + m) against s·cos θ_j."""

    name = "arcface"
    description = "ArcFace additive angular margin softmax over class centres"
    Settings = ArcFaceSettings

    def target(self, cos: Tensor) -> Tensor:
        return arcface_target(cos, self.settings.margin)


class CosFaceLoss(MarginSoftmax):
    """CosFace (additive cosine margin): cross-entropy of s·(cos θ_y − m) against s·cos θ_j."""

    name = "cosface"
    description = "CosFace additive cosine margin softmax over class centres"
    Settings = CosFaceSettings

    def target(self, cos: Tensor) -> Tensor:
        return cos - self.settings.margin


class CombinedSettings(StrictModel):
    """A margin softmax plus the mined triplet loss (margin: the config's alpha)."""

    softmax: Literal["arcface", "cosface"] = Field("arcface", description="The margin softmax part.")
    scale: float = Field(64.0, gt=0.0, description="Logit scale s.")
    margin: float = Field(0.5, ge=0.0, lt=1.0, description="The softmax part's margin m.")
    softmax_weight: float = Field(1.0, ge=0.0, description="Weight of the margin softmax.")
    triplet_weight: float = Field(1.0, ge=0.0, description="Weight of the triplet loss.")


class MarginTripletLoss(Loss):
    """softmax_weight · margin softmax over every image + triplet_weight · triplet loss of the mined triplets."""

    name = "arcface-triplet"
    description = "margin softmax (ArcFace or CosFace) plus the mined triplet loss, weighted"
    needs = "triplets"
    Settings = CombinedSettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        part = ArcFaceLoss if s.softmax == "arcface" else CosFaceLoss
        self.softmax = part(
            part.Settings(scale=s.scale, margin=s.margin),
            num_classes=self.num_classes,
            embedding_dim=self.embedding_dim,
            name=f"{self.plugin_name}.{s.softmax}",
        )

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        anchor, positive, negative = embeddings.chunk(3)
        triplets = triplet_losses(anchor, positive, negative, self.margin)
        self.active = (triplets.detach() > 0).sum()
        softmax = self.softmax.compute(embeddings, labels)
        return self.settings.softmax_weight * softmax + self.settings.triplet_weight * triplets.mean()
