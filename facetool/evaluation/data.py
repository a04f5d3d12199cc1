"""Where `facetool eval` finds its faces and its default pairs file.

The data is a face cache, or an LFW-style image folder. For a folder only the images named by the pairs
are detected: they are linked (symlinks, the same relative paths) into `<out>/pairs-images/`, and
`facetool.detection.runner.detect_directory` crops that folder into `<out>/pairs-faces.h5`, at the detection
config's crop size (the size the training caches have; the model's input size is reached by resizing, as
everywhere else). A rerun resumes the cache; an image named by the pairs but absent from the folder stops
before any detection. `--out` never lies inside the data folder, the data never inside `<out>/pairs-images/`,
and only links eval made itself are ever replaced there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.detection.resolve import check_faces_input, is_cache_path, resolve_faces
from facetool.errors import PairsError, UsageError
from facetool.evaluation.pairs import MAX_LISTED, PairsFile
from facetool.files import check_output_not_input, make_dir

PAIRS_NAME = "pairs.txt"
VIEW_DIR = "pairs-images"
VIEW_CACHE = "pairs-faces.h5"


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def pairs_candidates(data: Path) -> list[Path]:
    """Where the default pairs.txt is looked for, in order.

    For a folder: inside it, then beside it (LFW ships pairs.txt next to its image folder). For a cache:
    beside the cache file, then inside and beside the image folder recorded in its metadata.
    """
    if not is_cache_path(data):
        return [data / PAIRS_NAME, data.parent / PAIRS_NAME]
    places = [data.parent / PAIRS_NAME]
    if data.is_file():
        with open_cache(data) as cache:
            source = cache.meta.get("data_dir")
        if isinstance(source, str) and source:
            places += [Path(source) / PAIRS_NAME, Path(source).parent / PAIRS_NAME]
    return places


def default_pairs(data: Path) -> Path:
    """The first existing pairs.txt of `pairs_candidates`; UsageError naming every place looked in."""
    places = pairs_candidates(data)
    for place in places:
        if place.is_file():
            return place
    raise UsageError(f"no --pairs given and no {PAIRS_NAME} found in: {', '.join(map(str, places))}")


def link_pair_images(data_dir: Path, pairs: Sequence[PairsFile], view: Path) -> int:
    """Symlink every image of `pairs` from `data_dir` into `view`; PairsError listing missing images."""
    images = sorted(set().union(*(p.images for p in pairs)))
    missing = [rel for rel in images if not (data_dir / rel).is_file()]
    if missing:
        shown = ", ".join(missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        names = ", ".join(str(p.path) for p in pairs)
        raise PairsError(f"{names}: {len(missing)} image(s) missing from {data_dir}: {shown}{more}")
    for rel in images:
        link = view / rel
        target = (data_dir / rel).resolve()
        if link.is_symlink():
            if Path(os.readlink(link)) == target:
                continue
            link.unlink()
        elif link.exists():
            raise UsageError(
                f"{link}: not a link made by eval; refusing to replace it (choose another --out)"
            )
        make_dir(link.parent, "folder of the pair images")
        link.symlink_to(target)
    return len(images)


def faces_for_pairs(
    data: Path,
    pairs: Sequence[PairsFile],
    out_dir: Path,
    detect: DetectConfig,
    progress: Callable[[object], None] | None = None,
) -> Path:
    """The face cache to evaluate from: `data` itself, or the detection cache made from a folder's pair images.

    `facetool.detection.resolve` decides what `data` is (a missing path or one of the wrong kind is a UsageError).
    """
    if not check_faces_input(data, missing=UsageError):
        return data
    view = out_dir / VIEW_DIR
    check_output_not_input(out_dir, [data], option="--out")
    if _resolved(data).is_relative_to(_resolved(view)):
        raise UsageError(f"{data}: --data lies inside {view}, where eval links the pairs' images")
    link_pair_images(data, pairs, view)
    return resolve_faces(view, out_dir / VIEW_CACHE, detect, progress=progress).cache
