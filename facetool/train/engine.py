"""The compute of training: a gradient-free embedding pass and one optimisation step on a chunk of triplets.

Everything device- and precision-specific lives here, so faster variants (bf16 autocast, channels_last,
CUDA graphs, DDP) replace these two methods without touching the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facetool.config.train import TrainConfig
from facetool.data.augment import prepare
from facetool.device import autocast
from facetool.losses import triplet_loss


def _adam(params: Iterator[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.learning_rate, weight_decay=c.weight_decay)


def _adamw(params: Iterator[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)


def _sgd(params: Iterator[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay)


OPTIMIZERS: dict[str, Callable[[Iterator[nn.Parameter], TrainConfig], torch.optim.Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


@dataclass
class Engine:
    """Model, optimizer and the numeric setting they run under."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    dtype: torch.dtype
    margin: float
    image_size: int
    embed_batch_size: int

    def embed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 embeddings of standardised inputs, eval mode, no gradients."""
        self.model.eval()
        out = []
        with torch.no_grad(), autocast(self.device, self.dtype):
            for chunk in x.split(self.embed_batch_size):
                out.append(F.normalize(self.model(chunk).float(), dim=1))
        return torch.cat(out)

    def embed(self, faces: torch.Tensor) -> torch.Tensor:
        """Embeddings of uint8 NHWC faces without augmentation, prepared chunk by chunk."""
        parts = [
            self.embed_inputs(prepare(chunk, self.image_size)) for chunk in faces.split(self.embed_batch_size)
        ]
        return torch.cat(parts)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One training step on inputs ordered [anchors; positives; negatives]; returns the loss (a tensor)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.dtype):
            emb = self.model(x)
        emb = F.normalize(emb.float(), dim=1)
        anchor, positive, negative = emb.chunk(3)
        loss = triplet_loss(anchor, positive, negative, self.margin)
        if not torch.isfinite(loss):
            return loss.detach()
        loss.backward()
        self.optimizer.step()
        return loss.detach()
