"""A contract check a miner plugin's author runs in their own tests: `check_miner("my-miner")`.

It builds the miner (by registered name, so the entry point and its settings are exercised too, or from the
class) with its default or given settings and mines random normalised embeddings of a few people, then checks
what facetool relies on beyond what every call already validates (index tensors in range, the label rule):
settings that build from defaults, a description, the same triplets for the same generator seed, untouched
embeddings, and no triplet (and no error) for a batch with one person or with no two images of one person.
Any failure is an AssertionError saying which rule broke.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from facetool.miners import Miner, MiningResult, get_miner, miner_class


def _triplets(result: MiningResult) -> list[tuple[int, int, int]]:
    return list(
        zip(result.anchors.tolist(), result.positives.tolist(), result.negatives.tolist(), strict=True)
    )


def check_miner(
    miner: str | type[Miner],
    settings: Mapping[str, Any] | None = None,
    *,
    people: int = 6,
    per_person: int = 4,
    embedding_dim: int = 8,
    margin: float = 0.2,
    seed: int = 0,
) -> Miner:
    """Assert that `miner` (a registered name or a Miner subclass) keeps the miner contract; returns the instance."""

    def build(generator: torch.Generator | None = None) -> Miner:
        if isinstance(miner, str):
            return get_miner(miner, settings, generator=generator)
        return miner(miner.Settings.model_validate(dict(settings or {})), generator=generator)

    cls = miner_class(miner)[1] if isinstance(miner, str) else miner
    name = miner if isinstance(miner, str) else cls.name
    built = build()
    assert isinstance(built, Miner), f"{name}: not a facetool.miners.Miner"
    described = cls.description or cls.__doc__
    assert isinstance(described, str) and described.strip(), f"{name}: no description (or docstring)"
    cls.Settings()  # every setting has a default: `miner = "NAME"` alone must work
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(people * per_person, embedding_dim, generator=g), dim=1)
    labels = torch.arange(people).repeat_interleave(per_person)
    before = emb.clone()
    first = build(torch.Generator().manual_seed(seed))(emb, labels, margin)
    assert torch.equal(emb, before), f"{name}: mining changed the embeddings"
    again = build(torch.Generator().manual_seed(seed))(emb, labels, margin)
    assert _triplets(first) == _triplets(again), f"{name}: the same generator seed gave other triplets"
    assert first.num_pairs == people * per_person * (per_person - 1) // 2, (
        f"{name}: num_pairs {first.num_pairs}"
    )
    alone = built(emb, torch.zeros_like(labels), margin)
    assert alone.num_triplets == 0, f"{name}: {alone.num_triplets} triplets from a batch of one person"
    singles = built(emb, torch.arange(labels.numel()), margin)
    assert singles.num_triplets == 0, f"{name}: {singles.num_triplets} triplets without two images of anyone"
    return built
