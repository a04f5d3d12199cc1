"""Choosing identities from labels alone: leaving out people with too few images, the validation split.

Both work on anything with `num_identities`, `counts()` and `subset(identity_ids)`: the in-memory `FaceSet`
and every `FaceSource`, so a streamed source is split without decoding a face.
"""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

import numpy as np

from facetool.errors import FacetoolError


class Identities(Protocol):
    """Faces grouped by identity that can be narrowed to some identities, relabelled 0..k-1."""

    @property
    def num_identities(self) -> int: ...

    def counts(self) -> np.ndarray: ...

    def subset(self, identity_ids: np.ndarray | list[int]) -> Self: ...


T = TypeVar("T", bound=Identities)


def drop_small_identities(faces: T, min_images: int = 2) -> tuple[T, int]:
    """Leave out identities with fewer than `min_images` images (no positive pair); returns the count left out."""
    counts = faces.counts()
    keep = np.flatnonzero(counts >= min_images)
    dropped = int(np.count_nonzero(counts > 0) - len(keep))
    return faces.subset(keep), dropped


def split_identities(faces: T, fraction: float, seed: int) -> tuple[T, T | None]:
    """Hold out a seeded `fraction` of identities (at least 2 when fraction > 0); (train, validation)."""
    n = faces.num_identities
    n_val = round(n * fraction)
    if fraction <= 0:
        return faces, None
    n_val = max(2, n_val)
    if n - n_val < 2:
        raise FacetoolError(
            f"validation.fraction {fraction} leaves {n - n_val} training identities out of {n}; "
            "at least 2 are needed"
        )
    order = np.random.default_rng([seed, 0x5A11]).permutation(n)
    return faces.subset(np.sort(order[n_val:])), faces.subset(np.sort(order[:n_val]))
