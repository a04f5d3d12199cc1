"""Triplet miners: the validating base class and `get_miner`, which finds miners through entry points."""

from __future__ import annotations

import torch

from facetool.config.base import field_default
from facetool.config.train import TrainConfig
from facetool.errors import PluginError
from facetool.miners.base import Miner, MiningResult
from facetool.plugins import MINERS, available, call_plugin, load_plugin

DEFAULT_MINER: str = field_default(TrainConfig, "miner")


def get_miner(name: str = DEFAULT_MINER, *, generator: torch.Generator | None = None) -> Miner:
    """The miner registered as `name` in the `facetool.miners` entry-point group, ready to call.

    PluginError for an unknown name (listing the available ones), a clash, a broken plugin, an entry point
    that is not a Miner subclass, or a constructor that raises or exits.
    """
    target = load_plugin(MINERS, name)
    if not (isinstance(target, type) and issubclass(target, Miner)):
        raise PluginError(
            f"miner {name!r}: entry point gives {target!r}, not a facetool.miners.Miner subclass"
        )
    return call_plugin(f"miner {name!r} could not be created", target, generator=generator, name=name)


def available_miners() -> list[str]:
    """Registered miner names."""
    return available(MINERS)


__all__ = ["DEFAULT_MINER", "Miner", "MiningResult", "available_miners", "get_miner"]
