"""`build_backbone`: a backbone factory found through entry points, checked on a dummy batch once built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from facetool.config.base import NoSettings, StrictModel, field_default, plugin_settings
from facetool.config.train import BackboneConfig, TrainConfig
from facetool.errors import FacetoolError, PluginError
from facetool.plugins import BACKBONES, available, call_plugin, resolve

DEFAULT_BACKBONE: str = field_default(BackboneConfig, "name")
NORM_TOLERANCE = 1e-3


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    settings: Mapping[str, Any] | None = None,
    *,
    embedding_dim: int = field_default(TrainConfig, "embedding_dim"),
    dropout: float = field_default(TrainConfig, "dropout_prob"),
    pretrained: str = field_default(TrainConfig, "pretrained"),
    image_size: int = field_default(TrainConfig, "image_size"),
) -> nn.Module:
    """Build the backbone registered as `name` in `facetool.backbones`, with its `[backbone]` settings.

    The factory is called as `factory(settings, embedding_dim=, dropout=, pretrained=, image_size=)`, the
    settings validated by its `Settings` model (ConfigError naming `backbone.KEY`). The module it returns is run
    once in eval mode on a batch of 2 images of `image_size`; its output must be (2, embedding_dim) with unit
    L2 norms, else PluginError naming the plugin. facetool errors raised by the factory (a missing weights
    file, a bad image size) pass through unchanged. The defaults are TrainConfig's.
    """
    factory, parsed = backbone_plugin(name, settings)
    model = call_plugin(
        f"backbone {name!r} could not be built",
        factory,
        parsed,
        embedding_dim=embedding_dim,
        dropout=dropout,
        pretrained=pretrained,
        image_size=image_size,
    )
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"backbone {name!r}: factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    check_output(model, name, embedding_dim, image_size)
    return model


def settings_model(factory: Any, what: str) -> type[StrictModel]:
    """A plugin's `Settings` model (NoSettings when it declares none); PluginError when it is not a pydantic model."""
    model = getattr(factory, "Settings", NoSettings)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"{what}: Settings is {model!r}, not a pydantic model")
    return model


def backbone_plugin(
    name: str, settings: Mapping[str, Any] | None = None
) -> tuple[Callable[..., Any], StrictModel]:
    """The factory backbone `name` means (an alias's target) and its `[backbone]` table validated by the
    factory's `Settings` model; ConfigError naming `backbone.KEY`, PluginError when the factory is not callable."""
    _, factory, table = resolve(BACKBONES, name, settings)
    if not callable(factory):
        raise PluginError(f"backbone {name!r}: entry point gives {factory!r}, which is not callable")
    model = settings_model(factory, f"backbone {name!r}")
    return factory, plugin_settings(model, table, key="backbone", plugin=f"backbone {name!r}")


def backbone_identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What a backbone entry (`name`, optional `settings`, sizes) builds, with aliases resolved and every
    setting spelt out: two entries that build the same network compare equal (`tiny-cnn-gdc` and `tiny-cnn`
    with `head = "gdc"`)."""
    plugin = resolve(BACKBONES, str(spec["name"]), spec.get("settings"))[0]
    _, parsed = backbone_plugin(str(spec["name"]), spec.get("settings"))
    return {**spec, "name": plugin, "settings": parsed.model_dump(mode="json")}


def same_backbone(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Whether two backbone entries (a checkpoint's, a configuration's) build the same network."""
    if dict(first) == dict(second):
        return True
    try:
        return backbone_identity(first) == backbone_identity(second)
    except (FacetoolError, KeyError):
        return False


def check_output(model: nn.Module, name: str, embedding_dim: int, image_size: int) -> None:
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
