"""`tiny-cnn`, `tiny-cnn-gdc` and `small-cnn`: small, fast embedding networks for CPU tests, demos and runs.

All are four conv-BN-ReLU-pool blocks. `small-cnn` has twice the channels (about 420k parameters against
100k, about 3x the compute). `tiny-cnn-gdc` ends in a global depthwise convolution instead of average
pooling, for about the same compute; it is the one for CPU accuracy runs on aligned faces.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from facetool.errors import ModelFileError, UsageError

MIN_IMAGE_SIZE = 16
WIDTHS = (16, 32, 64, 128)
SMALL_WIDTHS = (32, 64, 128, 256)
Head = Literal["average", "gdc"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU-pool blocks, a pooling head, dropout, linear; L2-normalised output.

    `head` "average" pools the last feature map globally. "gdc" (global depthwise convolution, as in
    MobileFaceNet) learns one weight per channel and position of that map instead: on aligned faces where a
    feature sits says much (eyes above mouth), and average pooling throws that away.
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        dropout: float = 0.0,
        widths: tuple[int, ...] = WIDTHS,
        head: Head = "average",
        image_size: int = 64,
    ) -> None:
        super().__init__()
        channels = (3, *widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(channels)))
        width, side = widths[-1], image_size // 2 ** len(widths)
        if head == "gdc":
            self.pool: nn.Module = nn.Sequential(
                nn.Conv2d(width, width, kernel_size=side, groups=width, bias=False),
                nn.BatchNorm2d(width),
                nn.Flatten(),
            )
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.dropout(self.pool(self.features(x)))), p=2, dim=1)


def _build(
    name: str,
    widths: tuple[int, ...],
    embedding_dim: int,
    dropout: float,
    pretrained: str,
    image_size: int,
    head: Head = "average",
) -> nn.Module:
    if image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"image_size {image_size}: {name} needs at least {MIN_IMAGE_SIZE} pixels")
    if embedding_dim < 1:
        raise UsageError(f"embedding_dim {embedding_dim}: must be positive")
    model = TinyCNN(embedding_dim, dropout, widths, head, image_size)
    if pretrained != "none":
        try:
            state = torch.load(pretrained, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise ModelFileError(f"{pretrained}: not {name} weights ({type(exc).__name__}: {exc})") from None
    return model


def build_tiny_cnn(
    embedding_dim: int = 128, dropout: float = 0.0, pretrained: str = "none", image_size: int = 64
) -> nn.Module:
    """A tiny 4-block CNN (about 100k parameters) for CPU tests and demos; pretrained: none or a state dict file."""
    return _build("tiny-cnn", WIDTHS, embedding_dim, dropout, pretrained, image_size)


def build_small_cnn(
    embedding_dim: int = 128, dropout: float = 0.0, pretrained: str = "none", image_size: int = 64
) -> nn.Module:
    """The same 4 blocks with twice the channels (about 420k parameters) for CPU accuracy runs."""
    return _build("small-cnn", SMALL_WIDTHS, embedding_dim, dropout, pretrained, image_size)


def build_tiny_cnn_gdc(
    embedding_dim: int = 128, dropout: float = 0.0, pretrained: str = "none", image_size: int = 64
) -> nn.Module:
    """tiny-cnn with a global depthwise convolution head: keeps where on the aligned face a feature sits."""
    return _build("tiny-cnn-gdc", WIDTHS, embedding_dim, dropout, pretrained, image_size, "gdc")


def build_small_cnn_gdc(
    embedding_dim: int = 128, dropout: float = 0.0, pretrained: str = "none", image_size: int = 64
) -> nn.Module:
    """small-cnn with the global depthwise convolution head of tiny-cnn-gdc."""
    return _build("small-cnn-gdc", SMALL_WIDTHS, embedding_dim, dropout, pretrained, image_size, "gdc")
