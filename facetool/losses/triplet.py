"""`triplet`: the FaceNet triplet loss on mined triplets (the default loss)."""

from __future__ import annotations

from torch import Tensor

from facetool.losses.base import Loss


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Mean over triplets of max(0, ||a−p||² − ||a−n||² + margin).

    Inputs are (T, D) embeddings. An empty batch raises ValueError instead of returning NaN: the caller decides
    whether to skip the step.
    """
    return triplet_losses(anchor, positive, negative, margin).mean()


def triplet_losses(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """(T,) per-triplet losses max(0, ||a−p||² − ||a−n||² + margin); the positive ones are the active triplets."""
    if anchor.shape != positive.shape or anchor.shape != negative.shape or anchor.dim() != 2:
        raise ValueError(
            f"triplet_loss needs three (T, D) tensors of one shape, got {tuple(anchor.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    if anchor.shape[0] == 0:
        raise ValueError("triplet_loss on an empty batch of triplets (skip the step instead)")
    d_ap = (anchor - positive).pow(2).sum(dim=1)
    d_an = (anchor - negative).pow(2).sum(dim=1)
    return (d_ap - d_an + margin).clamp_min(0.0)


class TripletLoss(Loss):
    """FaceNet's max(0, ||a−p||² − ||a−n||² + alpha) over mined triplets; alpha is the config's `alpha`."""

    name = "triplet"
    description = "FaceNet triplet loss on mined triplets (margin: alpha)"
    needs = "triplets"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        anchor, positive, negative = embeddings.chunk(3)
        losses = triplet_losses(anchor, positive, negative, self.margin)
        self.active = (losses.detach() > 0).sum()
        return losses.mean()
