"""Throwaway plugin distributions for tests: a real `*.dist-info` (METADATA and entry_points.txt) beside the
module it points to, found through sys.path (in process) or PYTHONPATH (subprocess)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from facetool import plugins

Install = Callable[..., None]


def make_distribution(
    root: Path,
    name: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str],
    version: str = "1.0",
) -> None:
    """Write an installed distribution `name` (dist-info with entry points) and its modules under `root`."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {target}" for key, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@contextmanager
def plugin_site(root: Path) -> Iterator[Install]:
    """Install throwaway distributions under `root` for the block only (sys.path entry, discovery cache
    cleared on the way in and out, their modules unloaded after)."""
    root.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(root))
    before = set(sys.modules)

    def install(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
        make_distribution(root, name, entry_points, modules)
        plugins.clear_cache()

    try:
        yield install
    finally:
        sys.path.remove(str(root))
        for module in set(sys.modules) - before:
            if getattr(sys.modules[module], "__file__", "") and str(root) in sys.modules[module].__file__:
                del sys.modules[module]
        plugins.clear_cache()


TEST_BACKBONE = "test-cnn"
TEST_BACKBONES = """
import itertools

import torch
from pydantic import BaseModel, ConfigDict
from typing import Literal
from torch import nn
from torch.nn import functional as F


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    head: Literal["avg", "gdc"] = "avg"


def block(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class TestCNN(nn.Module):
    "Four conv-BN-ReLU-pool blocks of 16-128 channels, a pooling head, dropout, linear; L2-normalised."

    Settings = Settings

    def __init__(self, settings, *, embedding_dim, dropout, pretrained, image_size):
        super().__init__()
        widths = (16, 32, 64, 128)
        self.features = nn.Sequential(*(block(a, b) for a, b in itertools.pairwise((3, *widths))))
        width, side = widths[-1], image_size // 16
        if settings.head == "gdc":
            self.pool = nn.Sequential(
                nn.Conv2d(width, width, kernel_size=side, groups=width, bias=False), nn.BatchNorm2d(width), nn.Flatten()
            )
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, embedding_dim)
        if pretrained != "none":
            self.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))

    def forward(self, x):
        return F.normalize(self.head(self.dropout(self.pool(self.features(x)))), p=2, dim=1)
"""


TEST_OVERFLOW_LOSS = "test-overflow"
TEST_LOSSES = """
from pydantic import Field

from facetool.config.base import StrictModel
from facetool.losses.triplet import TripletLoss


class OverflowTriplet(TripletLoss):
    name = "test-overflow"
    description = "the triplet loss plus `offset` (tests: offset = inf overflows every step's loss)"

    class Settings(StrictModel):
        offset: float = Field(0.0, allow_inf_nan=True)

    def compute(self, embeddings, labels):
        return super().compute(embeddings, labels) + self.settings.offset
"""


def install_test_plugins(root: Path) -> None:
    """Install the `test-cnn` backbone and the `test-overflow` loss under `root` (put `root` on sys.path or
    PYTHONPATH).

    `test-overflow` is the triplet loss plus a settable `offset`: `--set loss.offset=inf` makes every step's loss
    infinite, for the tests of the non-finite policies (the margin itself must be finite).

    The core suite trains this small CNN instead of facetool-extras' `test-cnn`, so it passes without the extras
    installed. It is the same network, layer for layer and in the same order (`head` "avg" or "gdc" included),
    so its weights from a given seed, and every number a test compares, are those `test-cnn` gave.
    """
    make_distribution(
        root,
        "facetool-test-backbones",
        {
            "facetool.backbones": {TEST_BACKBONE: "facetool_test_backbones:TestCNN"},
            "facetool.losses": {TEST_OVERFLOW_LOSS: "facetool_test_losses:OverflowTriplet"},
        },
        {"facetool_test_backbones": TEST_BACKBONES, "facetool_test_losses": TEST_LOSSES},
    )
