"""Settings of the face cache and of `facetool dataset filter`: the defaults live here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from facetool.config.base import StrictModel


class CacheSettings(StrictModel):
    """How faces are stored in a cache."""

    model_config = StrictModel.model_config | {"frozen": True}

    encoding: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = Field(95, ge=1, le=100)


class FilterSettings(StrictModel):
    """Which identities and images `dataset filter` keeps."""

    min_images: int = Field(2, ge=1, description="Drop identities with fewer images.")
    max_images: int | None = Field(
        None, ge=1, description="Keep at most this many images per identity, the first by path."
    )
    exclude_pairs: list[Path] = Field(
        default_factory=list, description="Drop every identity named in these LFW pairs files."
    )
    fold: int | None = Field(
        None,
        ge=1,
        description="With excluded pairs files: drop only the people of this fold (1..n) of each, e.g. of "
        "View 2's pairs.txt.",
    )
    include: list[Path] = Field(
        default_factory=list, description="Keep only the identities listed in these files."
    )
    exclude: list[Path] = Field(
        default_factory=list, description="Drop the identities listed in these files."
    )
    keep_pairs: list[Path] = Field(
        default_factory=list,
        description="Also keep every image named in these pairs files, whatever the other rules say.",
    )
    jpeg_quality: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Re-encode the kept faces as JPEG of this quality, a smaller cache to carry (unset: copy "
        "the stored bytes).",
    )


CACHE_DEFAULTS = CacheSettings()
