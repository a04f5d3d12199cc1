"""Checking a training recipe before any work: every plugin it names is installed and takes its settings.

The settings models check types and ranges when the configuration is read; the names of the backbone, the
miners and the loss, and the keys of the `[loss]` table, belong to plugins, so only loading them tells. Doing
that first means a misspelt name or key fails in one line before detection, a filtered cache or a run folder
is written, and before a protocol stores its recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facetool.config.base import NamedTable
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, FacetoolError
from facetool.losses import loss_settings
from facetool.miners import miner_settings
from facetool.models.backbone import backbone_plugin


def check_plugins(config: TrainConfig, prefix: str = "") -> None:
    """Load the recipe's backbone, miners and loss, and validate their tables with each plugin's own model.

    Errors keep their class and name the key, after `prefix` (`train.` in a protocol recipe).
    """
    tables: list[tuple[str, Callable[..., Any], NamedTable]] = [
        ("backbone", backbone_plugin, config.backbone),
        ("miner", miner_settings, config.miner),
        *(
            (f"miner_stages.{i}.miner", miner_settings, stage.miner)
            for i, stage in enumerate(config.miner_stages)
        ),
        ("loss", loss_settings, config.loss),
    ]
    for key, check, table in tables:
        try:
            check(table.name, table.settings)
        except ConfigError as exc:
            kind = key.rpartition(".")[2]
            raise ConfigError(prefix + str(exc).replace(f"{kind}.", f"{key}.", 1)) from None
        except FacetoolError as exc:
            raise type(exc)(f"{prefix}{key}: {exc}") from None
