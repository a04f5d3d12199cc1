"""Identity names as facetool compares them: Unicode NFC, so one person spelled in NFC or NFD is one identity,
and a short digest per name that a checkpoint can store to say who it was trained on without the names."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable


def normalize_identity(name: str) -> str:
    """The canonical (NFC) spelling of an identity name."""
    return unicodedata.normalize("NFC", name)


def identity_digest(name: str) -> str:
    """16 hex digits of SHA-256 of the NFC name: the same person gives the same digest in every cache."""
    return hashlib.sha256(normalize_identity(name).encode("utf-8")).hexdigest()[:16]


def identity_digests(names: Iterable[str]) -> list[str]:
    """Sorted, distinct digests of `names`."""
    return sorted({identity_digest(name) for name in names})
