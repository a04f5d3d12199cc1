"""The `mtcnn` detector: facenet-pytorch's MTCNN with the weights its wheel ships, boxes, scores and five landmarks.

facenet-pytorch returns object arrays and `None` for an image without a face; here every image gives plain
float32 arrays (empty when no face passes). An image whose shorter side is below `min_face_size` holds no face
MTCNN can find and gives none without running the network. Images of one size run as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from facetool.config.base import StrictModel
from facetool.config.detect import DetectConfig
from facetool.detection.detectors import Detections, Detector
from facetool.device import resolve_device
from facetool.errors import ModelFileError, UsageError

MIN_FACE_FLOOR = 12  # MTCNN's first network looks at 12 x 12 windows


class MtcnnSettings(StrictModel):
    """MTCNN's own settings (`[detect.detector]` with `name = "mtcnn"`); `detect.threshold` is the final score."""

    min_face_size: int = Field(20, ge=MIN_FACE_FLOOR, description="smallest face searched for, in pixels")
    stage_thresholds: tuple[float, float, float] = Field(
        (0.6, 0.7, 0.7), description="P-, R- and O-net score thresholds"
    )
    factor: float = Field(0.709, gt=0.1, lt=1, description="scale step of the image pyramid")
    device: str = Field("cpu", min_length=1, description="cpu, cuda, cuda:N or auto")

    @field_validator("device")
    @classmethod
    def _a_device(cls, value: str) -> str:
        if value != "auto":
            try:
                torch.device(value)
            except RuntimeError:
                raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}") from None
        return value

    @field_validator("stage_thresholds")
    @classmethod
    def _in_unit_interval(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0 < t < 1 for t in value):
            raise ValueError(f"each must lie in (0, 1), got {list(value)}")
        return value


def _plain(values: Any, shape: tuple[int, ...]) -> np.ndarray:
    """facenet-pytorch's possibly-object array (or None) as float32 of `shape` (first axis free)."""
    if values is None:
        return np.zeros((0, *shape), np.float32)
    array = np.asarray([np.asarray(v, np.float64) for v in values], np.float64)
    return array.reshape(-1, *shape).astype(np.float32)


class MtcnnDetector(Detector):
    """MTCNN from facenet-pytorch (weights inside its wheel): boxes, scores and five landmarks per face."""

    description = "MTCNN from facenet-pytorch: boxes, scores and five landmarks (for five-point alignment)"
    gives_landmarks = True
    Settings = MtcnnSettings

    def __init__(self, settings: MtcnnSettings | None, config: DetectConfig) -> None:
        super().__init__(settings, config)
        from facenet_pytorch import MTCNN

        s: MtcnnSettings = self.settings  # type: ignore[assignment]
        try:
            self.net = MTCNN(
                min_face_size=s.min_face_size,
                thresholds=list(s.stage_thresholds),
                factor=s.factor,
                select_largest=False,
                keep_all=True,
                device=torch.device("cpu"),
            )
        except (OSError, RuntimeError) as exc:
            raise ModelFileError(f"facenet-pytorch MTCNN weights cannot be loaded ({exc})") from None
        self.device: torch.device | None = None

    @property
    def max_workers(self) -> int | None:
        """One worker on a GPU (one model, batches of images); as many as cores on the CPU."""
        return None if self.settings.device == "cpu" else 1  # type: ignore[attr-defined]

    @classmethod
    def prepare_worker(cls) -> None:
        """One torch thread per worker (the workers are the parallelism). Set before the first torch operation in
        the forked worker: copying the weights with the thread pool the parent used hangs there."""
        torch.set_num_threads(1)

    def _net(self) -> Any:
        if self.device is None:  # resolved and moved on first use: the parent that forks the workers never
            spec = self.settings.device  # type: ignore[attr-defined]  # touches CUDA
            try:
                self.device = resolve_device(spec)
            except UsageError:
                raise UsageError(
                    f"detect.detector.device = {spec!r}: CUDA is not available on this machine (use cpu)"
                ) from None
            self.net.to(self.device)
            self.net.device = self.device
        return self.net

    def detect(self, rgb: np.ndarray) -> Detections:
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Images of one size run together; images smaller than the minimum face give no face."""
        out: list[Detections | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        floor = self.settings.min_face_size  # type: ignore[attr-defined]
        for i, rgb in enumerate(images):
            if min(rgb.shape[:2]) < floor:
                out[i] = Detections.empty(True)
            else:
                groups.setdefault(rgb.shape, []).append(i)
        for indices in groups.values():
            batch = np.stack([images[i] for i in indices])
            with torch.no_grad():
                boxes, probs, points = self._net().detect(batch, landmarks=True)
            for k, i in enumerate(indices):
                out[i] = self._parse(boxes[k], probs[k], points[k], images[i].shape)
        return out  # type: ignore[return-value]

    def _parse(self, boxes: Any, probs: Any, points: Any, shape: tuple[int, ...]) -> Detections:
        if boxes is None:
            return Detections.empty(True)
        height, width = shape[:2]
        box = _plain(boxes, (4,))
        score = _plain(probs, ()).reshape(-1)
        marks = _plain(points, (5, 2))
        scale = np.array([width, height, width, height], np.float32)
        box = np.clip(box, 0, scale)
        keep = (score >= self.threshold) & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
        box, score, marks = box[keep], score[keep], marks[keep]
        order = np.argsort(-score, kind="stable")
        return Detections(box[order], score[order], marks[order])

    def record(self) -> dict[str, Any]:
        """Name, the settings that decide the faces, and the weights (facenet-pytorch's version); not the device."""
        from importlib.metadata import version

        settings = self.settings.model_dump(mode="json", exclude={"device"})
        return {
            "name": self.name,
            "settings": settings,
            "weights": f"facenet-pytorch {version('facenet-pytorch')}",
        }

    def summary(self) -> str:
        return f"mtcnn (facenet-pytorch, {self.settings.device})"  # type: ignore[attr-defined]
