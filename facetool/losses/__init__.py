"""Training losses: the validating base class, the built-in `triplet`, and `get_loss` through entry points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from facetool.config.base import NoSettings, StrictModel, plugin_settings
from facetool.errors import PluginError
from facetool.losses.base import NEEDS, Loss, Needs
from facetool.losses.triplet import TripletLoss, triplet_loss, triplet_losses
from facetool.plugins import LOSSES, available, call_plugin, resolve

DEFAULT_LOSS = "triplet"


def loss_class(name: str) -> type[Loss]:
    """The Loss subclass registered as `name` (an alias's target); PluginError when the entry point gives
    anything else."""
    return _resolved(name)[0]


def _resolved(name: str, settings: Mapping[str, Any] | None = None) -> tuple[type[Loss], dict[str, Any]]:
    _, target, table = resolve(LOSSES, name, settings)
    if not (isinstance(target, type) and issubclass(target, Loss)):
        raise PluginError(f"loss {name!r}: entry point gives {target!r}, not a facetool.losses.Loss subclass")
    if target.needs not in NEEDS:
        raise PluginError(f"loss {name!r}: needs is {target.needs!r}, not one of {', '.join(NEEDS)}")
    return target, table


def get_loss(
    name: str = DEFAULT_LOSS,
    settings: Mapping[str, Any] | None = None,
    *,
    num_classes: int,
    embedding_dim: int,
    margin: float = 0.2,
) -> Loss:
    """The loss registered as `name`, with its `[loss]` settings validated by its own `Settings` model.

    A bad setting is a ConfigError naming `loss.KEY`; an unknown, clashing or broken plugin a PluginError.
    """
    cls = loss_class(name)
    parsed = loss_settings(name, settings)
    return call_plugin(
        f"loss {name!r} could not be created",
        cls,
        parsed,
        num_classes=num_classes,
        embedding_dim=embedding_dim,
        margin=margin,
        name=name,
    )


def loss_settings(name: str, settings: Mapping[str, Any] | None = None) -> StrictModel:
    """The `[loss]` table validated by loss `name`'s own `Settings` model; a bad key is a ConfigError naming
    `loss.KEY` and the value given."""
    cls, table = _resolved(name, settings)
    return plugin_settings(cls.Settings, table, key="loss", plugin=f"loss {name!r}")


def available_losses() -> list[str]:
    """Registered loss names."""
    return available(LOSSES)


__all__ = [
    "DEFAULT_LOSS",
    "NEEDS",
    "Loss",
    "Needs",
    "NoSettings",
    "TripletLoss",
    "available_losses",
    "get_loss",
    "loss_class",
    "loss_settings",
    "triplet_loss",
    "triplet_losses",
]
