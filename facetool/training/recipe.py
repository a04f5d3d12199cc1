"""Checking a training recipe before any work: every plugin it names is installed and takes its settings.

The settings models check types and ranges when the configuration is read; the names of the backbone, the
miners and the loss, and the keys of the `[loss]` table, belong to plugins, so only loading them tells. Doing
that first means a misspelt name or key fails in one line before detection, a filtered cache or a run folder
is written, and before a protocol stores its recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, FacetoolError
from facetool.losses import loss_settings
from facetool.miners import get_miner
from facetool.models.backbone import backbone_factory


def check_plugins(config: TrainConfig, prefix: str = "") -> None:
    """Load the recipe's backbone, miners and loss, and validate its `[loss]` table with the loss's own model.

    Errors keep their class and name the key, after `prefix` (`train.` in a protocol recipe).
    """
    _named(prefix + "backbone", backbone_factory, config.backbone)
    stages = [("miner", config.miner)] + [
        (f"miner_stages.{i}.miner", stage.miner) for i, stage in enumerate(config.miner_stages)
    ]
    for key, name in stages:
        _named(prefix + key, get_miner, name)
    try:
        loss_settings(config.loss.name, config.loss.settings)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    except FacetoolError as exc:
        raise type(exc)(f"{prefix}loss: {exc}") from None


def _named(key: str, load: Callable[[str], Any], name: str) -> None:
    try:
        load(name)
    except FacetoolError as exc:
        raise type(exc)(f"{key}: {exc}") from None
