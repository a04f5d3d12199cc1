"""`gallery build` and `identify`: embed a gallery once, then search it for each probe's nearest identities.

A gallery is a folder of `<identity>/<images>`, a face cache, or an index written by `build_gallery`. The index
records the model's SHA-256 (its card's, or the checkpoint file's), so probes are never compared with a gallery
another model embedded. The search is exact (`evaluation.identification.nearest_identities`): each identity's
distance is that of its nearest face; a probe whose nearest identity is farther than the model's threshold is
"unknown" (open set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache.gallery import Gallery, GalleryModel, is_gallery_file, write_gallery
from facetool.config.recognition import GalleryConfig
from facetool.detection.scan import scan_images
from facetool.errors import UsageError
from facetool.evaluation.identification import in_chunks, nearest_identities
from facetool.files import check_output_not_input
from facetool.recognition.faces import Embedded, ModelAtWork, embed_inputs, load_model


@dataclass(frozen=True)
class GalleryBuilt:
    """What `build_gallery` wrote."""

    gallery: str
    faces: int
    identities: int
    missed: list[tuple[str, str]]
    model_sha256: str


def _labelled(embedded: Embedded, source: Path) -> tuple[np.ndarray, list[str]]:
    """Integer labels and sorted identity names; UsageError when the source names no identities."""
    if not embedded.paths:
        raise UsageError(f"{source}: has no identities: no faces to make a gallery of")
    names = sorted(set(embedded.identities))
    if names == [""]:
        raise UsageError(f"{source}: the faces have no identities (a gallery needs <identity>/<images>)")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[n] for n in embedded.identities], np.int64), names


def _gallery_model(model: ModelAtWork) -> GalleryModel:
    return GalleryModel(model.sha256, model.path.name, model.decision.metric, model.decision.flip)


def _check_folder(source: Path) -> None:
    if source.is_dir() and not scan_images(source).images:
        raise UsageError(
            f"{source}: no <identity>/<images> sub-folders: a gallery names each person by a folder"
        )


def build_gallery(
    model_path: Path | str, source: Path | str, out: Path | str, config: GalleryConfig | None = None
) -> GalleryBuilt:
    """Embed every face of `source` (folder of `<identity>/<images>` or face cache) into the index `out`."""
    config = config or GalleryConfig()
    source, out = Path(source), Path(out)
    check_output_not_input(out, [source, model_path])
    if source.is_file() and is_gallery_file(source):
        raise UsageError(f"{source}: is already a gallery index; build from a folder or a face cache")
    _check_folder(source)
    model = load_model(model_path, config)
    embedded = embed_inputs(model, [source])
    labels, names = _labelled(embedded, source)
    write_gallery(
        out,
        embeddings=embedded.embeddings,
        labels=labels,
        paths=embedded.paths,
        identities=names,
        model=_gallery_model(model),
        meta={"source": str(source), "threshold": model.decision.threshold},
    )
    return GalleryBuilt(str(out), len(labels), len(names), embedded.missed, model.sha256)


@dataclass(frozen=True)
class Match:
    identity: str
    distance: float


@dataclass(frozen=True)
class ProbeResult:
    """One probe's nearest identities; `identity` is the nearest one, or None ("unknown") beyond the threshold."""

    probe: str
    identity: str | None
    matches: list[Match]


@dataclass(frozen=True)
class IdentifyResult:
    model: str
    gallery: str
    metric: str
    threshold: float
    threshold_source: str
    gallery_faces: int
    gallery_identities: int
    probes: list[ProbeResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_pairing(gallery: Gallery, model: ModelAtWork) -> None:
    own = _gallery_model(model)
    if gallery.model.sha256 != own.sha256:
        raise UsageError(
            f"{gallery.path}: the gallery was built with model {gallery.model.name} "
            f"(SHA-256 {gallery.model.sha256[:12]}), not {model.path} ({own.sha256[:12]}); rebuild it with "
            "`facetool gallery build`"
        )
    if (gallery.model.metric, gallery.model.flip) != (own.metric, own.flip):
        raise UsageError(
            f"{gallery.path}: built with {gallery.model.metric} distance, flip {gallery.model.flip}; "
            f"{model.path} now decides by {own.metric}, flip {own.flip}: rebuild the gallery"
        )


def identify(
    model_path: Path | str,
    gallery_path: Path | str,
    probes: Sequence[Path | str],
    config: GalleryConfig | None = None,
) -> IdentifyResult:
    """The `top_k` nearest identities of each probe photo's face in the gallery, and its verdict."""
    config = config or GalleryConfig()
    gallery_path = Path(gallery_path)
    if not probes:
        raise UsageError("identify needs at least one probe photo")
    model = load_model(model_path, config)
    if gallery_path.is_file() and is_gallery_file(gallery_path):
        with Gallery(gallery_path) as gallery:
            _check_pairing(gallery, model)
            if len(gallery) == 0:
                raise UsageError(f"{gallery_path}: the gallery is empty")
            names = gallery.identities
            found = embed_inputs(model, probes, need_face=True)
            dist, labels = nearest_identities(
                found.embeddings,
                gallery.chunks(config.chunk_faces),
                config.top_k,
                model.decision.metric,
                model.embedder.device,
            )
            faces = len(gallery)
    else:
        _check_folder(gallery_path)
        embedded = embed_inputs(model, [gallery_path])
        gallery_labels, names = _labelled(embedded, gallery_path)
        found = embed_inputs(model, probes, need_face=True)
        dist, labels = nearest_identities(
            found.embeddings,
            in_chunks(embedded.embeddings, gallery_labels, config.chunk_faces),
            config.top_k,
            model.decision.metric,
            model.embedder.device,
        )
        faces = len(gallery_labels)
    threshold = model.decision.threshold
    results = []
    for probe, row_d, row_l in zip(found.paths, dist, labels, strict=True):
        matches = [Match(names[int(lab)], float(d)) for d, lab in zip(row_d, row_l, strict=True) if lab >= 0]
        best = matches[0].identity if matches and matches[0].distance <= threshold else None
        results.append(ProbeResult(probe, best, matches))
    return IdentifyResult(
        model=str(model_path),
        gallery=str(gallery_path),
        metric=model.decision.metric,
        threshold=threshold,
        threshold_source=model.decision.source,
        gallery_faces=faces,
        gallery_identities=len(names),
        probes=results,
    )
