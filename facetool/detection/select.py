"""Choosing one face among the detections: a registry of named rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Selector = Callable[[np.ndarray, np.ndarray, tuple[int, int]], int]


def _largest(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> int:
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(areas))


def _center(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> int:
    height, width = shape
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    distances = np.hypot(centers[:, 0] - width / 2, centers[:, 1] - height / 2)
    return int(np.argmin(distances))


def _score(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> int:
    return int(np.argmax(scores))


SELECTORS: dict[str, Selector] = {"largest": _largest, "center": _center, "score": _score}


def select_face(name: str, boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> int:
    """Index of the face to keep among `boxes` (K >= 1) for an image of `shape` (height, width).

    Ties go to the earlier (higher-scoring) detection.
    """
    try:
        rule = SELECTORS[name]
    except KeyError:
        raise ValueError(f"unknown face selection {name!r}; expected one of {', '.join(SELECTORS)}") from None
    if len(boxes) == 0:
        raise ValueError("select_face needs at least one box")
    return rule(boxes, scores, shape)
