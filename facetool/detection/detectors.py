"""The detector interface (plugin group `facetool.detectors`) and the one way to build the configured detector.

A detector takes upright RGB uint8 images and gives, per image, the faces whose score reaches `detect.threshold`:
boxes (K, 4) float32 in pixels (x1, y1, x2, y2), scores (K,) float32 best first and, when it finds them, five
landmarks per face (K, 5, 2) float32 (left eye, right eye, nose tip, left and right mouth corner; NaN rows for
a face without them). Its own settings are its pydantic `Settings` model, filled from the `[detect.detector]`
table; `record()` is what the face cache and the model card keep of it, so a rerun, a merge and every command
that crops for a model can tell whether the same detector made the faces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from facetool.config.base import NoSettings, StrictModel, plugin_settings
from facetool.config.detect import DetectConfig
from facetool.errors import UsageError
from facetool.plugins import DETECTORS, available, call_plugin, plugin_class

NO_LANDMARKS = np.zeros((0, 5, 2), np.float32)


@dataclass(frozen=True)
class Detections:
    """The faces found in one image, best score first; `landmarks` is None when the detector gives none."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @staticmethod
    def empty(with_landmarks: bool) -> Detections:
        """No face."""
        landmarks = NO_LANDMARKS if with_landmarks else None
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), landmarks)


class Detector(ABC):
    """A face detector plugin; implement `detect` (and `detect_batch` when the network takes batches).

    `gives_landmarks` says whether it finds the five points (five-point alignment needs them). An instance is
    used by one process at a time: the detect runner builds one in every worker.
    """

    name: ClassVar[str] = "detector"
    description: ClassVar[str] = ""
    gives_landmarks: ClassVar[bool] = False
    Settings: ClassVar[type[StrictModel]] = NoSettings

    def __init__(self, settings: StrictModel | None, config: DetectConfig) -> None:
        self.settings = settings if settings is not None else type(self).Settings()
        self.threshold = config.threshold

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> Detections:
        """The faces of one RGB uint8 (H, W, 3) image scoring at least `self.threshold`, best first."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The faces of several images, in order; override to run the network on batches."""
        return [self.detect(rgb) for rgb in images]

    @property
    def max_workers(self) -> int | None:
        """The most worker processes worth running this detector in (None: one per core)."""
        return None

    @classmethod
    def prepare_worker(cls) -> None:
        """Called once in each worker process before the detector is built there (e.g. to limit its threads)."""
        return None

    def record(self) -> dict[str, Any]:
        """What the cache and the model card keep of this detector: its name and settings, by value."""
        return {"name": self.name, "settings": self.settings.model_dump(mode="json")}

    def summary(self) -> str:
        """One line for the run summary: which detector, and from where."""
        return self.name


def detector_class(name: str) -> type[Detector]:
    """The Detector subclass registered as `name`; PluginError when the entry point gives anything else."""
    return plugin_class(DETECTORS, name, Detector, "facetool.detection.Detector")


def detector_settings(name: str, settings: dict[str, Any] | None = None) -> StrictModel:
    """The `[detect.detector]` table validated by detector `name`'s `Settings` model; a bad key is a ConfigError
    naming `detect.detector.KEY`."""
    return plugin_settings(
        detector_class(name).Settings, settings, key="detect.detector", plugin=f"detector {name!r}"
    )


def check_alignment(config: DetectConfig) -> type[Detector]:
    """The configured detector's class, after checking that it can give what `detect.align` needs."""
    cls = detector_class(config.detector.name)
    if config.align == "five-point" and not cls.gives_landmarks:
        raise UsageError(
            f"detect.align = 'five-point' needs five landmarks per face, but detect.detector = "
            f"{config.detector.name!r} gives none; use a detector with landmarks (mtcnn) or detect.align = 'none'"
        )
    return cls


def create_detector(config: DetectConfig) -> Detector:
    """The detector `config.detector` names, its settings validated, ready to run; errors are one line."""
    cls = check_alignment(config)
    settings = detector_settings(config.detector.name, config.detector.settings)
    detector = call_plugin(f"detector {config.detector.name!r} could not be created", cls, settings, config)
    detector.name = config.detector.name
    return detector


def available_detectors() -> list[str]:
    """Registered detector names."""
    return available(DETECTORS)
