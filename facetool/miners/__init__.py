"""Triplet miners: the validating base class and `get_miner`, which finds miners through entry points."""

from __future__ import annotations

import torch

from facetool.errors import PluginError
from facetool.miners.base import Miner, MiningResult
from facetool.plugins import MINERS, available, load_plugin

DEFAULT_MINER = "semihard"


def get_miner(name: str = DEFAULT_MINER, *, generator: torch.Generator | None = None) -> Miner:
    """The miner registered as `name` in the `facetool.miners` entry-point group, ready to call.

    PluginError for an unknown name (listing the available ones), a clash, a broken plugin, or an entry point
    that is not a Miner subclass.
    """
    target = load_plugin(MINERS, name)
    if not (isinstance(target, type) and issubclass(target, Miner)):
        raise PluginError(
            f"miner {name!r}: entry point gives {target!r}, not a facetool.miners.Miner subclass"
        )
    try:
        return target(generator=generator, name=name)
    except Exception as exc:
        raise PluginError(f"miner {name!r} could not be created: {type(exc).__name__}: {exc}") from exc


def available_miners() -> list[str]:
    """Registered miner names."""
    return available(MINERS)


__all__ = ["DEFAULT_MINER", "Miner", "MiningResult", "available_miners", "get_miner"]
