"""`tiny-cnn` and `small-cnn`: small, fast embedding networks for CPU tests, demos and runs.

Both are four conv-BN-ReLU-pool blocks; `small-cnn` has twice the channels (about 420k parameters against
100k, about 3x the compute). Their one setting, `head`, picks how the last feature map becomes a vector:
`avg` pools it, `gdc` (a global depthwise convolution) learns where on the aligned face a feature sits, for
about the same compute; `tiny-cnn` with `head = "gdc"` is the one for CPU accuracy runs on aligned faces.
The older names `tiny-cnn-gdc` and `small-cnn-gdc` are aliases of these with `head = "gdc"`.
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from facetool.errors import ModelFileError, UsageError
from facetool.plugins import PluginAlias

MIN_IMAGE_SIZE = 16
WIDTHS = (16, 32, 64, 128)
SMALL_WIDTHS = (32, 64, 128, 256)
Head = Literal["avg", "gdc"]


class CNNSettings(BaseModel):
    """The `[backbone]` settings of `tiny-cnn` and `small-cnn`."""

    model_config = ConfigDict(extra="forbid")

    head: Head = Field(
        "avg",
        description="avg: global average pooling of the last feature map; gdc: a global depthwise convolution, "
        "one learned weight per channel and position (MobileFaceNet), for aligned faces.",
    )


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class TinyCNN(nn.Module):
    """`tiny-cnn`: four conv-BN-ReLU-pool blocks, a pooling head, dropout, linear; L2-normalised output.

    About 100k parameters; `pretrained` is none or a file holding its state dict.
    """

    name: ClassVar[str] = "tiny-cnn"
    description: ClassVar[str] = (
        "four conv-BN-ReLU-pool blocks (about 100k parameters) for CPU tests and demos"
    )
    Settings: ClassVar[type[CNNSettings]] = CNNSettings
    widths: ClassVar[tuple[int, ...]] = WIDTHS

    def __init__(
        self,
        settings: CNNSettings | None = None,
        *,
        embedding_dim: int = 128,
        dropout: float = 0.0,
        pretrained: str = "none",
        image_size: int = 64,
    ) -> None:
        if image_size < MIN_IMAGE_SIZE:
            raise UsageError(f"image_size {image_size}: {self.name} needs at least {MIN_IMAGE_SIZE} pixels")
        if embedding_dim < 1:
            raise UsageError(f"embedding_dim {embedding_dim}: must be positive")
        super().__init__()
        settings = settings if settings is not None else CNNSettings()
        channels = (3, *self.widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(channels)))
        width, side = self.widths[-1], image_size // 2 ** len(self.widths)
        if settings.head == "gdc":
            self.pool: nn.Module = nn.Sequential(
                nn.Conv2d(width, width, kernel_size=side, groups=width, bias=False),
                nn.BatchNorm2d(width),
                nn.Flatten(),
            )
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, embedding_dim)
        if pretrained != "none":
            try:
                self.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))
            except Exception as exc:
                raise ModelFileError(
                    f"{pretrained}: not {self.name} weights ({type(exc).__name__}: {exc})"
                ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.dropout(self.pool(self.features(x)))), p=2, dim=1)


class SmallCNN(TinyCNN):
    """`small-cnn`: the blocks of tiny-cnn with twice the channels (about 420k parameters) for CPU accuracy runs."""

    name: ClassVar[str] = "small-cnn"
    description: ClassVar[str] = "tiny-cnn with twice the channels (about 420k parameters, 3x the compute)"
    widths: ClassVar[tuple[int, ...]] = SMALL_WIDTHS


TINY_CNN_GDC = PluginAlias("tiny-cnn", {"head": "gdc"})
SMALL_CNN_GDC = PluginAlias("small-cnn", {"head": "gdc"})

# The entry-point targets before 0.2, so an install whose metadata predates the rename keeps working.
build_tiny_cnn = TinyCNN
build_small_cnn = SmallCNN
build_tiny_cnn_gdc = TINY_CNN_GDC
build_small_cnn_gdc = SMALL_CNN_GDC
