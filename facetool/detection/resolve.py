"""One rule for every command that reads faces: the data is a face cache, or an image folder detected into one.

A folder is detected into the cache path the command chose (a rerun skips the images already there); a
file with an HDF5 suffix is taken as the cache itself; anything else is one UsageError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facetool.config.detect import DetectConfig
from facetool.detection.runner import DetectProgress, DetectSummary, detect_directory
from facetool.errors import FacetoolError, UsageError
from facetool.files import make_dir

CACHE_SUFFIXES = (".h5", ".hdf5")


def is_cache_path(path: Path | str) -> bool:
    """A path with an HDF5 suffix names a face cache."""
    return Path(path).suffix.lower() in CACHE_SUFFIXES


def check_faces_input(
    data: Path | str, what: str = "data", missing: type[FacetoolError] = FacetoolError
) -> bool:
    """Check that `data` is a face cache or an image folder without touching anything; True for a folder.

    A path that does not exist raises `missing` (commands keep their documented exit codes); one of the
    wrong kind is a UsageError.
    """
    data = Path(data)
    if data.is_dir():
        return True
    if not data.exists():
        raise missing(f"{data}: {what} not found (expected a face cache .h5 or an image folder)")
    if not data.is_file() or not is_cache_path(data):
        raise UsageError(f"{data}: {what} is not a face cache (.h5) or an image folder")
    return False


@dataclass(frozen=True)
class ResolvedFaces:
    """The cache to read, and the detection summary when it was made (or updated) from an image folder."""

    cache: Path
    detection: DetectSummary | None = None


def resolve_faces(
    data: Path | str,
    detect_into: Path | str,
    detect: DetectConfig | None = None,
    *,
    what: str = "data",
    missing: type[FacetoolError] = FacetoolError,
    say: Callable[[str], None] = lambda _text: None,
    progress: Callable[[DetectProgress], None] | None = None,
) -> ResolvedFaces:
    """The face cache for `data`: itself when it is a cache, else `detect_into` filled from the image folder."""
    data = Path(data)
    if not check_faces_input(data, what, missing):
        return ResolvedFaces(data)
    cache = Path(detect_into)
    make_dir(cache.parent, "folder of the face cache")
    say(f"detecting faces in {data} into {cache}")
    return ResolvedFaces(cache, detect_directory(data, cache, detect or DetectConfig(), progress))
