"""The model a collection command runs, and every face of its inputs embedded the same way.

Photos are detected and cropped as the model's card says (`inference.crop_for`), face caches are used as
stored; the distance, flip and threshold are the card's (`verification.decision_threshold`), so a gallery
search, a cleaning rule and a clustering cut all decide as `facetool verify` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetool.config.detect import DetectConfig
from facetool.config.recognition import RecognitionSettings
from facetool.embedding.sources import CacheSource, collect_sources
from facetool.errors import UsageError
from facetool.inference import Embedder, crop_for, load_embedder
from facetool.models.model_card import file_sha256
from facetool.verification import Decision, decision_threshold


@dataclass
class ModelAtWork:
    """An embedder with its decision threshold, crop settings and the digest that names it."""

    path: Path
    embedder: Embedder
    decision: Decision
    detect: DetectConfig
    sha256: str


def load_model(path: Path | str, settings: RecognitionSettings) -> ModelAtWork:
    """Load `path` (checkpoint, .safetensors or .onnx with its card) for a collection command."""
    path = Path(path)
    embedder, card = load_embedder(
        path, runtime=settings.runtime, device=settings.device, batch_size=settings.batch_size
    )
    decision = decision_threshold(path, card, settings.threshold)
    embedder.flip = decision.flip
    sha256 = card["sha256"] if card is not None else file_sha256(path)
    return ModelAtWork(path, embedder, decision, crop_for(embedder, settings.detect), sha256)


@dataclass
class Embedded:
    """Faces of some inputs: one row per face, in input order; `missed` are (path, why) of images left out."""

    embeddings: np.ndarray
    paths: list[str]
    identities: list[str]
    faces: np.ndarray | None = None
    missed: list[tuple[str, str]] = field(default_factory=list)


def embed_inputs(
    model: ModelAtWork, inputs: Sequence[Path | str], *, keep_faces: bool = False, need_face: bool = False
) -> Embedded:
    """Embed every face of `inputs` (image files, folders of `<identity>/<images>` or flat, face caches).

    Photos whose detector found no face are left out and listed in `missed` (`need_face`: they are not, they
    are an error naming the file). `keep_faces` keeps the crops (for thumbnails).
    """
    missed: list[tuple[str, str]] = []
    parts, faces, paths, identities = [], [], [], []
    why = f"no face found (detector threshold {model.detect.threshold})"
    for source in collect_sources(list(inputs), model.detect):
        stored = isinstance(
            source, CacheSource
        )  # a cache's faces, fallback crops included, were chosen already
        for batch in source.batches(model.embedder.batch_size, missed):
            keep = [i for i, found in enumerate(batch.detected) if found or stored]
            lost = [batch.paths[i] for i, found in enumerate(batch.detected) if not (found or stored)]
            if need_face and lost:
                raise UsageError(f"{lost[0]}: {why}")
            missed += [(path, why) for path in lost]
            if not keep:
                continue
            crops = batch.faces[keep]
            parts.append(model.embedder(crops))
            paths += [batch.paths[i] for i in keep]
            identities += [batch.identities[i] for i in keep]
            if keep_faces:
                faces.append(crops)
    if need_face and missed:
        path, why = missed[0]
        raise UsageError(f"{path}: {why}")
    dim = model.embedder.embedding_dim
    return Embedded(
        np.concatenate(parts) if parts else np.zeros((0, dim), np.float32),
        paths,
        identities,
        np.concatenate(faces) if faces else None,
        missed,
    )
