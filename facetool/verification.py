"""`verify_pair`: are the faces in two photos the same person, by a trained model and a threshold?

Both photos are detected and cropped as `facetool detect` crops a training cache (the model card's crop
settings when the model has one), embedded as `eval` embeds (`to_input` to the model's input size, flip as
the card's threshold was measured), and compared by the card's distance: squared Euclidean (0..4) or cosine
(1 - cos, 0..2). Same person when the distance is at most the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.config.base import field_default
from facetool.config.detect import DetectConfig
from facetool.config.evaluate import EvalConfig
from facetool.config.export import VerifyConfig
from facetool.detection import crop_face_from_file, detector_from_config
from facetool.errors import ModelFileError, UsageError
from facetool.inference import crop_for, load_embedder
from facetool.models.card_schema import DISTANCE_MAX

DEFAULT_DISTANCE: str = field_default(EvalConfig, "distance")


@dataclass(frozen=True)
class FaceFound:
    """How one photo was cropped: the detector box and score, or the whole-image fallback."""

    image: str
    detected: bool
    score: float | None
    box: list[float] | None
    note: str | None


@dataclass(frozen=True)
class VerifyResult:
    """The verdict with everything it rests on, as `--json` prints it."""

    model: str
    runtime: str
    distance: float
    metric: str
    threshold: float
    threshold_source: str
    same_person: bool
    flip: bool
    faces: list[FaceFound]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_distance(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """Squared Euclidean or cosine (1 - cos) distance between two L2-normalised embeddings."""
    if metric == "cosine":
        return float(1.0 - np.dot(a, b))
    return float(np.sum((a - b) ** 2))


def _face(path: Path, detector: Any, detect: DetectConfig) -> tuple[np.ndarray, FaceFound]:
    crop = crop_face_from_file(path, detector, detect)
    if crop.detected:
        box = [round(v, 1) for v in crop.box] if crop.box is not None else None
        return crop.face, FaceFound(str(path), True, round(crop.score, 4), box, None)
    size = detect.image_size
    note = (
        f"no face found in {path} (detector threshold {detect.threshold}): "
        f"used the whole image, resized to {size}x{size}"
    )
    return crop.face, FaceFound(str(path), False, None, None, note)


@dataclass(frozen=True)
class Decision:
    """The threshold a model decides "same person" by, where it came from, and the distance and flip it
    was measured with."""

    threshold: float
    source: str
    metric: str
    flip: bool


def decision_threshold(model: Path | str, card: dict[str, Any] | None, given: float | None) -> Decision:
    """The threshold given on the command line, else the model card's; UsageError naming the model when it has
    none or when it lies beyond the distance's range (every pair would match)."""
    verification = (card or {}).get("verification") or {}
    if given is not None:
        threshold, source = given, "--threshold"
    elif "threshold" in verification:
        threshold = float(verification["threshold"])
        source = (
            f"model card ({verification.get('protocol') or 'eval'} accuracy {verification['accuracy']:.4f})"
        )
    else:
        raise UsageError(
            f"{model}: no verification threshold: give --threshold, or export the model with --report "
            "report.json so its card holds one"
        )
    metric = str(verification.get("distance", DEFAULT_DISTANCE))
    if threshold > DISTANCE_MAX[metric]:
        raise UsageError(
            f"{source}: threshold {threshold:g} is beyond the largest {metric} distance "
            f"({DISTANCE_MAX[metric]:g}): every pair would be the same person"
        )
    return Decision(threshold, source, metric, bool(verification.get("flip", False)))


def verify_pair(
    model: Path | str, image_a: Path | str, image_b: Path | str, config: VerifyConfig | None = None
) -> VerifyResult:
    """Compare the faces of two image files with `model` (.pth, .safetensors + card, or .onnx + card)."""
    config = config or VerifyConfig()
    embedder, card = load_embedder(model, runtime=config.runtime, device=config.device)
    decision = decision_threshold(model, card, config.threshold)
    threshold, source, metric = decision.threshold, decision.source, decision.metric
    embedder.flip = decision.flip
    detect = crop_for(embedder, config.detect)
    detector = detector_from_config(detect)
    faces, found = [], []
    for image in (Path(image_a), Path(image_b)):
        face, info = _face(image, detector, detect)
        faces.append(face)
        found.append(info)
    a, b = embedder(np.stack(faces))
    distance = pair_distance(a, b, metric)
    if not math.isfinite(distance):
        raise ModelFileError(f"{model}: the distance of the two faces is {distance} (the model is unusable)")
    return VerifyResult(
        model=str(model),
        runtime=embedder.runtime,
        distance=distance,
        metric=metric,
        threshold=threshold,
        threshold_source=source,
        same_person=distance <= threshold,
        flip=embedder.flip,
        faces=found,
    )
