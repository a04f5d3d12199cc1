"""Triplet miners: the validating base class and `get_miner`, which finds miners through entry points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from facetool.config.base import StrictModel, field_default, plugin_settings
from facetool.config.train import MinerConfig
from facetool.errors import PluginError
from facetool.miners.base import Miner, MiningResult
from facetool.plugins import MINERS, available, call_plugin, resolve

DEFAULT_MINER: str = field_default(MinerConfig, "name")


def miner_class(
    name: str, settings: Mapping[str, Any] | None = None
) -> tuple[str, type[Miner], dict[str, Any]]:
    """The Miner subclass `name` means, with its plugin name and settings (an alias's resolved); PluginError
    when the entry point gives anything else."""
    plugin, target, table = resolve(MINERS, name, settings)
    if not (isinstance(target, type) and issubclass(target, Miner)):
        raise PluginError(
            f"miner {name!r}: entry point gives {target!r}, not a facetool.miners.Miner subclass"
        )
    return plugin, target, table


def miner_settings(name: str, settings: Mapping[str, Any] | None = None) -> StrictModel:
    """The `[miner]` table validated by miner `name`'s own `Settings` model; ConfigError naming `miner.KEY`."""
    _, cls, table = miner_class(name, settings)
    return plugin_settings(cls.Settings, table, key="miner", plugin=f"miner {name!r}")


def get_miner(
    name: str = DEFAULT_MINER,
    settings: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Miner:
    """The miner registered as `name` in the `facetool.miners` entry-point group, with its `[miner]` settings
    validated by its own `Settings` model, ready to call.

    ConfigError naming `miner.KEY` for a bad setting; PluginError for an unknown name (listing the available
    ones), a clash, a broken plugin, an entry point that is not a Miner subclass, or a constructor that raises
    or exits.
    """
    _, cls, _ = miner_class(name, settings)
    parsed = miner_settings(name, settings)
    return call_plugin(f"miner {name!r} could not be created", cls, parsed, generator=generator, name=name)


def available_miners() -> list[str]:
    """Registered miner names."""
    return available(MINERS)


__all__ = [
    "DEFAULT_MINER",
    "Miner",
    "MiningResult",
    "available_miners",
    "get_miner",
    "miner_class",
    "miner_settings",
]
