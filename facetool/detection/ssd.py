"""The OpenCV SSD ResNet-10 300x300 face detector run through cv2.dnn, in either published format: the network
(`SsdNet`) and the `ssd` detector plugin, facetool's default (boxes and scores, no landmarks)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from facetool.config.base import NoSettings
from facetool.config.detect import DetectConfig
from facetool.detection.detectors import Detections, Detector
from facetool.detection.model_files import ModelFiles, resolve_model_files
from facetool.errors import ModelFileError

INPUT_SIZE = (300, 300)
MEAN_BGR = (104.0, 177.0, 123.0)

_READERS: dict[str, Callable[[str, str], cv2.dnn.Net]] = {
    "tensorflow": lambda weights, graph: cv2.dnn.readNetFromTensorflow(weights, graph),
    "caffe": lambda weights, graph: cv2.dnn.readNetFromCaffe(graph, weights),
}


def load_net(files: ModelFiles) -> cv2.dnn.Net:
    """Read the network; a file OpenCV cannot parse raises ModelFileError naming it."""
    try:
        net = _READERS[files.format](str(files.weights), str(files.graph))
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise ModelFileError(
            f"{files.weights} / {files.graph}: OpenCV cannot load this {files.format} detector ({detail})"
        ) from None
    if net.empty():
        raise ModelFileError(f"{files.weights}: OpenCV loaded an empty {files.format} network")
    return net


def make_blob(rgb: np.ndarray) -> np.ndarray:
    """The network input for one RGB image: BGR, resized to 300x300, mean subtracted, NCHW float32."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.dnn.blobFromImage(bgr, 1.0, INPUT_SIZE, MEAN_BGR)


def parse_detections(
    output: np.ndarray, width: int, height: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """SSD output (1, 1, N, 7) to pixel boxes (K, 4) x1 y1 x2 y2 clipped to the image, and scores (K,).

    Keeps rows with confidence >= threshold whose clipped box has a positive area, best score first.
    """
    rows = output.reshape(-1, 7)
    rows = rows[rows[:, 2] >= threshold]
    scale = np.array([width, height, width, height], dtype=np.float32)
    boxes = rows[:, 3:7].astype(np.float32) * scale
    boxes = np.clip(boxes, 0, scale)
    scores = rows[:, 2].astype(np.float32)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order]


class SsdNet:
    """One loaded network. `detect(rgb)` gives the faces above the threshold.

    Not thread-safe (cv2.dnn nets keep state); give each worker process its own.
    """

    def __init__(self, files: ModelFiles, threshold: float = 0.5) -> None:
        self.files = files
        self.threshold = threshold
        self.net = load_net(files)

    def raw_output(self, rgb: np.ndarray) -> np.ndarray:
        """The network's raw (1, 1, N, 7) output for an RGB uint8 image."""
        self.net.setInput(make_blob(rgb))
        return self.net.forward()

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 4) float32 in pixels (x1, y1, x2, y2) and scores (K,) float32, best first."""
        height, width = rgb.shape[:2]
        return parse_detections(self.raw_output(rgb), width, height, self.threshold)


class SsdDetector(Detector):
    """OpenCV's SSD ResNet-10 face detector (boxes and scores, no landmarks); the default.

    Its files are found as `detect.model_format`, `detect.model_dir`, `detect.model_weights` and
    `detect.model_graph` say (`facetool.detection.model_files`); faces below `detect.threshold` are dropped.
    """

    description = "OpenCV SSD ResNet-10 face detector (boxes, no landmarks); the default"
    Settings = NoSettings

    def __init__(self, settings: NoSettings | None, config: DetectConfig) -> None:
        super().__init__(settings, config)
        self.files = resolve_model_files(
            config.model_format, config.model_dir, config.model_weights, config.model_graph
        )
        self.net = SsdNet(self.files, config.threshold)

    def detect(self, rgb: np.ndarray) -> Detections:
        boxes, scores = self.net.detect(rgb)
        return Detections(boxes, scores)

    def record(self) -> dict[str, object]:
        """The network by format and weights file name (never the folder it lay in), and where it was found."""
        files = self.files
        return {
            "name": self.name,
            "format": files.format,
            "weights": files.weights.name,
            "source": files.source,
        }

    def summary(self) -> str:
        return f"{self.files.format} ({self.files.source})"
