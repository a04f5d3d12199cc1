"""One image in, one face crop out: decode, detect, choose a face, crop or align (whole image when no face passes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetool.cache import FaceRecord, Failure
from facetool.config.detect import DetectConfig
from facetool.detection.align import align_face, has_landmarks
from facetool.detection.crop import crop_face, resize_to_square
from facetool.detection.detectors import Detections, Detector, create_detector
from facetool.detection.images import ImageDecodeError, read_image
from facetool.detection.scan import ImageEntry
from facetool.detection.select import select_face
from facetool.errors import FacetoolError


@dataclass(frozen=True)
class FaceCrop:
    """The face fields of a FaceRecord: crop, box in pixels of the upright image (None on fallback), score, the
    face's five landmarks (None when the detector gave none) and whether the crop was aligned on them."""

    face: np.ndarray
    box: tuple[float, float, float, float] | None
    score: float
    detected: bool
    landmarks: np.ndarray | None = None
    aligned: bool = False


def detector_from_config(config: DetectConfig) -> Detector:
    """The detector `config.detector` names (the SSD's files resolved as configured), checked against
    `config.align`."""
    return create_detector(config)


def crop_from_detections(rgb: np.ndarray, found: Detections, config: DetectConfig) -> FaceCrop:
    """Crop the face `config.select` picks among `found`, aligned on its landmarks when `config.align` asks and
    they are there (else the box crop); the whole image when no face was found."""
    if len(found) == 0:
        return FaceCrop(resize_to_square(rgb, config.image_size), None, math.nan, False)
    chosen = select_face(config.select, found.boxes, found.scores, rgb.shape[:2])
    box = tuple(float(v) for v in found.boxes[chosen])
    landmarks = None if found.landmarks is None else np.asarray(found.landmarks[chosen], np.float32)
    if config.align == "five-point" and has_landmarks(landmarks):
        face, aligned = align_face(rgb, landmarks, config.image_size), True  # type: ignore[arg-type]
    else:
        face, aligned = crop_face(rgb, box, config.margin, config.image_size), False
    return FaceCrop(face, box, float(found.scores[chosen]), True, landmarks, aligned)  # type: ignore[arg-type]


def crop_face_from_image(rgb: np.ndarray, detector: Detector, config: DetectConfig) -> FaceCrop:
    """Detect faces in an RGB uint8 image and crop (or align) the one `config.select` picks, or the whole image."""
    return crop_from_detections(rgb, detector.detect(rgb), config)


def crop_face_from_file(path: str | Path, detector: Detector, config: DetectConfig) -> FaceCrop:
    """Read one image file (EXIF orientation applied) and crop its face; ImageDecodeError names the file."""
    try:
        rgb = read_image(path, config.max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from None
    return crop_face_from_image(rgb, detector, config)


def _failure(entry: ImageEntry, exc: Exception) -> Failure:
    reason = str(exc) if isinstance(exc, ImageDecodeError) else f"{type(exc).__name__}: {exc}"
    return Failure(entry.path, entry.identity, entry.size, entry.mtime_ns, reason)


def _record(entry: ImageEntry, crop: FaceCrop) -> FaceRecord:
    return FaceRecord(
        entry.path,
        entry.identity,
        entry.size,
        entry.mtime_ns,
        crop.face,
        crop.box,
        crop.score,
        crop.detected,
        crop.landmarks,
    )


def process_batch(
    entries: Sequence[ImageEntry], data_dir: Path, detector: Detector, config: DetectConfig
) -> list[FaceRecord | Failure]:
    """The cache records of scanned images, the detector run on the readable ones together (`detect_batch`).

    Any problem with one file (unreadable, an OpenCV error) becomes a Failure with the reason; when the batch
    call fails, each image is detected alone so the error stays with the image that causes it. A FacetoolError
    from the detector (its device is missing) is raised: it concerns the run.
    """
    out: list[FaceRecord | Failure | None] = [None] * len(entries)
    images: list[tuple[int, np.ndarray]] = []
    for i, entry in enumerate(entries):
        try:
            images.append((i, read_image(data_dir / entry.path, config.max_pixels)))
        except ImageDecodeError as exc:
            out[i] = _failure(entry, exc)
    try:
        found: list[Detections | Exception] = list(detector.detect_batch([rgb for _, rgb in images]))
    except FacetoolError:
        raise  # the detector's own one-line error (a device that is not there) is about the run, not an image
    except Exception:  # retried one image at a time below, so the error stays with its image
        found = []
        for _, rgb in images:
            try:
                found.append(detector.detect(rgb))
            except FacetoolError:
                raise
            except Exception as exc:  # one odd image must not stop a run
                found.append(exc)
    for (i, rgb), result in zip(images, found, strict=True):
        if isinstance(result, Exception):
            out[i] = _failure(entries[i], result)
            continue
        try:
            out[i] = _record(entries[i], crop_from_detections(rgb, result, config))
        except Exception as exc:  # one odd image (e.g. an OpenCV error) must not stop a run
            out[i] = _failure(entries[i], exc)
    return out  # type: ignore[return-value]
