"""`build_backbone`: a backbone factory found through entry points, checked on a dummy batch once built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from facetool.config.base import field_default
from facetool.config.train import TrainConfig
from facetool.errors import PluginError
from facetool.plugins import BACKBONES, available, call_plugin, load_plugin

DEFAULT_BACKBONE: str = field_default(TrainConfig, "backbone")
NORM_TOLERANCE = 1e-3


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    embedding_dim: int = field_default(TrainConfig, "embedding_dim"),
    dropout: float = field_default(TrainConfig, "dropout_prob"),
    pretrained: str = field_default(TrainConfig, "pretrained"),
    image_size: int = field_default(TrainConfig, "image_size"),
) -> nn.Module:
    """Build the backbone registered as `name` in `facetool.backbones`.

    The factory is called with keyword arguments embedding_dim, dropout, pretrained and image_size. The module
    it returns is run once in eval mode on a batch of 2 images of `image_size`; its output must be
    (2, embedding_dim) with unit L2 norms, else PluginError naming the plugin. facetool errors raised by the
    factory (a missing weights file, a bad image size) pass through unchanged. The defaults are TrainConfig's.
    """
    factory = backbone_factory(name)
    model = call_plugin(
        f"backbone {name!r} could not be built",
        factory,
        embedding_dim=embedding_dim,
        dropout=dropout,
        pretrained=pretrained,
        image_size=image_size,
    )
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"backbone {name!r}: factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    check_backbone(model, name, embedding_dim, image_size)
    return model


def backbone_factory(name: str) -> Callable[..., Any]:
    """The factory registered as backbone `name`, loaded but not called; PluginError when it is not callable."""
    factory = load_plugin(BACKBONES, name)
    if not callable(factory):
        raise PluginError(f"backbone {name!r}: entry point gives {factory!r}, which is not callable")
    return factory


def check_backbone(model: nn.Module, name: str, embedding_dim: int, image_size: int) -> None:
    """Run a (2, 3, S, S) batch in eval mode; the output must be (2, embedding_dim), finite, L2-normalised."""
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    batch = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    model.eval()
    try:
        with torch.no_grad():
            out = call_plugin(
                f"backbone {name!r} failed on a (2, 3, {image_size}, {image_size}) batch", model, batch
            )
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, embedding_dim):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"backbone {name!r}: output {shape}, expected (2, {embedding_dim})")
    norms = out.float().norm(dim=1)
    if not bool(torch.isfinite(norms).all()) or bool(((norms - 1).abs() > NORM_TOLERANCE).any()):
        raise PluginError(
            f"backbone {name!r}: output rows must be L2-normalised, norms are {[round(float(v), 4) for v in norms]}"
        )


def available_backbones() -> list[str]:
    """Registered backbone names."""
    return available(BACKBONES)
