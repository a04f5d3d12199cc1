"""The library side of `facetool dataset stats | filter | merge`: counting, selecting and combining caches."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache import FaceCache, Failure, check_combinable, open_cache, write_selection
from facetool.cache.origin import merged_meta
from facetool.config.dataset import FilterSettings
from facetool.errors import FacetoolError, UsageError
from facetool.files import read_text_limited
from facetool.identities import normalize_identity

IDENTITY_LIST_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class DatasetStats:
    """Counts of one cache or image directory; detection figures are None for a directory."""

    source: str
    kind: str  # "cache" or "directory"
    identities: int
    images: int
    images_per_identity_min: int
    images_per_identity_median: float
    images_per_identity_max: int
    identities_with_2_plus: int
    detected: int | None
    fallbacks: int | None
    failures: int
    detection_rate: float | None  # detected / (faces + failures)
    empty_identities: int | None = None
    image_size: int | None = None
    encoding: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_identity(counts: Counter[str]) -> dict[str, Any]:
    values = np.array(sorted(counts.values()) or [0])
    return {
        "identities": len(counts),
        "images": int(values.sum()),
        "images_per_identity_min": int(values.min()),
        "images_per_identity_median": float(np.median(values)),
        "images_per_identity_max": int(values.max()),
        "identities_with_2_plus": int((values >= 2).sum()),
    }


def cache_stats(cache: FaceCache) -> DatasetStats:
    """Statistics of an opened face cache."""
    per_label = np.bincount(cache.labels, minlength=len(cache.identities))
    counts = Counter(dict(zip(cache.identities, per_label.tolist(), strict=True)))
    detected = int(cache.detected.sum())
    attempted = len(cache) + len(cache.failures)
    return DatasetStats(
        source=str(cache.path),
        kind="cache",
        **_per_identity(counts),
        detected=detected,
        fallbacks=len(cache) - detected,
        failures=len(cache.failures),
        detection_rate=detected / attempted if attempted else None,
        image_size=cache.image_size,
        encoding=cache.encoding,
    )


def directory_stats(data_dir: str | os.PathLike[str]) -> DatasetStats:
    """Statistics of an LFW-style image directory: it only lists files, nothing is decoded."""
    from facetool.detection.scan import scan_images

    scan = scan_images(data_dir)
    return DatasetStats(
        source=str(data_dir),
        kind="directory",
        **_per_identity(Counter(entry.identity for entry in scan.images)),
        detected=None,
        fallbacks=None,
        failures=len(scan.problems),
        detection_rate=None,
        empty_identities=len(scan.empty_identities),
    )


def dataset_stats(path: str | os.PathLike[str]) -> DatasetStats:
    """Statistics of a face cache file or of an image directory."""
    if Path(path).is_dir():
        return directory_stats(path)
    with open_cache(path) as cache:
        return cache_stats(cache)


def read_identity_list(path: str | os.PathLike[str]) -> set[str]:
    """Identity names, one per line; `#` starts a comment, blank lines are ignored."""
    path = Path(path)
    try:
        text = read_text_limited(path, limit=IDENTITY_LIST_LIMIT, what="identity list")
    except FacetoolError as exc:
        raise UsageError(str(exc)) from None
    names = set()
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if "/" in name or "\t" in name:
            raise UsageError(f"{path}:{number}: {name!r} is not an identity name")
        if name:
            names.add(normalize_identity(name))
    return names


def pairs_identities(path: str | os.PathLike[str], fold: int | None = None) -> set[str]:
    """Every identity named in an LFW pairs file, or only in its fold `fold` (1..n, View 2's pairs.txt)."""
    from facetool.evaluation.pairs import read_pairs

    pairs = read_pairs(path)
    if fold is None:
        return {normalize_identity(person) for person in pairs.people}
    if pairs.n_folds is None or not 1 <= fold <= pairs.n_folds:
        have = "has no folds" if pairs.n_folds is None else f"has folds 1 to {pairs.n_folds}"
        raise UsageError(f"{path}: fold {fold} asked for, but the file {have}")
    return {normalize_identity(name) for name in pairs.identities(fold - 1)}


@dataclass
class FilterReport:
    """What `filter_cache` kept and dropped, and why."""

    kept_identities: int = 0
    kept_images: int = 0
    kept_failures: int = 0
    kept_for_pairs: int = 0  # images kept only because a keep_pairs file names them
    dropped_identities: dict[str, int] = field(default_factory=dict)  # reason -> identities
    dropped_images: dict[str, int] = field(default_factory=dict)  # reason -> images

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _drop(report: FilterReport, reason: str, names: set[str], counts: Counter[str]) -> None:
    if names:
        report.dropped_identities[reason] = report.dropped_identities.get(reason, 0) + len(names)
        report.dropped_images[reason] = report.dropped_images.get(reason, 0) + sum(counts[n] for n in names)


def select_faces(cache: FaceCache, settings: FilterSettings) -> tuple[list[int], list[Failure], FilterReport]:
    """Indices of the faces and the failures that `settings` keeps, with the report.

    Order: the include lists, then exclude lists and pairs files drop identities, `max_images` keeps the
    first N images of each identity by path, and last `min_images` drops identities with fewer images.
    """
    if settings.max_images is not None and settings.max_images < settings.min_images:
        raise UsageError(f"--max-images {settings.max_images} is below --min-images {settings.min_images}")
    report = FilterReport()
    names = [normalize_identity(cache.identities[i]) for i in cache.labels]
    counts = Counter(names)
    alive = set(counts)
    if settings.include:
        wanted = set().union(*(read_identity_list(p) for p in settings.include))
        _drop(report, "not in an --include list", alive - wanted, counts)
        alive &= wanted
    if settings.exclude:
        hit = alive & set().union(*(read_identity_list(p) for p in settings.exclude))
        _drop(report, "in an --exclude list", hit, counts)
        alive -= hit
    if settings.fold is not None and not settings.exclude_pairs:
        raise UsageError(
            f"--fold {settings.fold} needs --exclude-pairs (the pairs file whose fold to leave out)"
        )
    for pairs_path in settings.exclude_pairs:
        hit = alive & pairs_identities(pairs_path, settings.fold)
        where = "" if settings.fold is None else f" fold {settings.fold}"
        _drop(report, f"named in {Path(pairs_path).name}{where}", hit, counts)
        alive -= hit
    kept: list[int] = []
    taken: Counter[str] = Counter()
    for i, name in enumerate(names):
        if name in alive and (settings.max_images is None or taken[name] < settings.max_images):
            kept.append(i)
            taken[name] += 1
    beyond = sum(counts[n] - taken[n] for n in alive)
    if beyond:
        report.dropped_images[f"beyond --max-images {settings.max_images}"] = beyond
    too_few = {n for n in alive if taken[n] < settings.min_images}
    if too_few:
        report.dropped_identities[f"fewer than {settings.min_images} images"] = len(too_few)
        report.dropped_images[f"fewer than {settings.min_images} images"] = sum(taken[n] for n in too_few)
    alive -= too_few
    kept = [i for i in kept if names[i] in alive]
    if settings.keep_pairs:
        named = set().union(*(read_pairs_images(p) for p in settings.keep_pairs))
        chosen = set(kept)
        extra = [i for i, path in enumerate(cache.paths) if path in named and i not in chosen]
        report.kept_for_pairs = len(extra)
        kept = sorted(chosen | set(extra))
        alive |= {names[i] for i in extra}
    failures = [f for f in cache.failures if normalize_identity(f.identity) in alive]
    report.kept_identities, report.kept_images, report.kept_failures = len(alive), len(kept), len(failures)
    return kept, failures, report


def read_pairs_images(path: str | os.PathLike[str]) -> set[str]:
    """The image paths (identity/identity_NNNN.jpg) named in an LFW pairs file."""
    from facetool.evaluation.pairs import read_pairs

    return set(read_pairs(path).images)


def filter_cache(
    source: str | os.PathLike[str], out: str | os.PathLike[str], settings: FilterSettings
) -> FilterReport:
    """Write the faces of `source` that `settings` keeps to a new cache `out`.

    The stored bytes are copied as they are, unless `jpeg_quality` asks for a re-encoding (a smaller cache
    to carry somewhere, say).
    """
    source, out = Path(source), Path(out)
    with open_cache(source) as cache:
        kept, failures, report = select_faces(cache, settings)
        meta = {**cache.meta, "filtered_from": str(source), "filter": settings.model_dump(mode="json")}
        write_selection(out, [(cache, kept, failures)], meta, jpeg_quality=settings.jpeg_quality)
    return report


@dataclass
class MergeReport:
    """What `merge_caches` wrote; duplicate paths were kept once (first input wins, faces over failures)."""

    inputs: list[str]
    images: int = 0
    identities: int = 0
    failures: int = 0
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_caches(
    sources: list[str | os.PathLike[str]], out: str | os.PathLike[str], max_examples: int = 5
) -> MergeReport:
    """Combine caches of one format, crop and detector settings into `out`; a path present in several inputs is
    kept once and reported. The merged cache records the common settings, so reruns and exports see them."""
    paths, out = [Path(s) for s in sources], Path(out)
    if not paths:
        raise UsageError("merge needs at least one input cache")
    report = MergeReport(inputs=[str(p) for p in paths])
    caches: list[FaceCache] = []
    try:
        for p in paths:
            caches.append(open_cache(p))
        taken: set[str] = set()
        duplicates: list[str] = []
        faces: list[list[int]] = []
        for cache in caches:
            faces.append([i for i, p in enumerate(cache.paths) if p not in taken])
            duplicates += [p for p in cache.paths if p in taken]
            taken.update(cache.paths)
        failures: list[list[Failure]] = []
        for cache in caches:
            failures.append([f for f in cache.failures if f.path not in taken])
            duplicates += [f.path for f in cache.failures if f.path in taken]
            taken.update(f.path for f in cache.failures)
        check_combinable(out, caches)
        meta = merged_meta([(str(c.path), c.meta) for c in caches])
        write_selection(out, list(zip(caches, faces, failures, strict=True)), meta)
        report.images = sum(len(idx) for idx in faces)
        report.identities = len(
            {c.identities[c.labels[i]] for c, idx in zip(caches, faces, strict=True) for i in idx}
        )
        report.failures = sum(len(f) for f in failures)
        report.duplicates = len(duplicates)
        report.duplicate_examples = sorted(set(duplicates))[:max_examples]
    finally:
        for cache in caches:
            cache.close()
    return report
