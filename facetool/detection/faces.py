"""One image in, one face crop out: decode, detect, choose a face, crop (whole image when no face passes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetool.cache import FaceRecord, Failure
from facetool.config.detect import DetectConfig
from facetool.detection.crop import crop_face, resize_to_square
from facetool.detection.images import ImageDecodeError, read_image
from facetool.detection.model_files import resolve_model_files
from facetool.detection.scan import ImageEntry
from facetool.detection.select import select_face
from facetool.detection.ssd import Detector


@dataclass(frozen=True)
class FaceCrop:
    """The face fields of a FaceRecord: crop, box in pixels of the upright image (None on fallback), score."""

    face: np.ndarray
    box: tuple[float, float, float, float] | None
    score: float
    detected: bool


def detector_from_config(config: DetectConfig) -> Detector:
    """Resolve the model files named (or implied) by `config` and load the network."""
    files = resolve_model_files(
        config.model_format, config.model_dir, config.model_weights, config.model_graph
    )
    return Detector(files, config.threshold)


def crop_face_from_image(rgb: np.ndarray, detector: Detector, config: DetectConfig) -> FaceCrop:
    """Detect faces in an RGB uint8 image and crop the one `config.select` picks, or the whole image."""
    boxes, scores = detector.detect(rgb)
    if len(boxes) == 0:
        return FaceCrop(resize_to_square(rgb, config.image_size), None, math.nan, False)
    chosen = select_face(config.select, boxes, scores, rgb.shape[:2])
    box = tuple(float(v) for v in boxes[chosen])
    face = crop_face(rgb, box, config.margin, config.image_size)
    return FaceCrop(face, box, float(scores[chosen]), True)  # type: ignore[arg-type]


def crop_face_from_file(path: str | Path, detector: Detector, config: DetectConfig) -> FaceCrop:
    """Read one image file (EXIF orientation applied) and crop its face; ImageDecodeError names the file."""
    try:
        rgb = read_image(path, config.max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from None
    return crop_face_from_image(rgb, detector, config)


def process_entry(
    entry: ImageEntry, data_dir: Path, detector: Detector, config: DetectConfig
) -> FaceRecord | Failure:
    """The cache record of one scanned image; any problem with the file becomes a Failure with the reason."""
    try:
        rgb = read_image(data_dir / entry.path, config.max_pixels)
        crop = crop_face_from_image(rgb, detector, config)
    except ImageDecodeError as exc:
        return Failure(entry.path, entry.identity, entry.size, entry.mtime_ns, str(exc))
    except Exception as exc:  # one odd image (e.g. an OpenCV error) must not stop a run
        return Failure(entry.path, entry.identity, entry.size, entry.mtime_ns, f"{type(exc).__name__}: {exc}")
    return FaceRecord(
        entry.path, entry.identity, entry.size, entry.mtime_ns, crop.face, crop.box, crop.score, crop.detected
    )
