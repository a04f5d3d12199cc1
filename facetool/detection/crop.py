"""Cutting a face out of an image: box plus margin, aspect kept, longer side resized, padded to a square."""

from __future__ import annotations

import cv2
import numpy as np


def expand_box(
    box: tuple[float, float, float, float] | np.ndarray, margin: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """The crop rectangle: `box` grown by `margin` in total per axis (half each side), clipped to the image.

    `margin` >= 1 is in pixels; below 1 it is a fraction of the box's width (x) and height (y).
    Returns integer x1, y1, x2, y2 with at least one pixel in each direction.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if margin >= 1:
        grow_x = grow_y = margin
    else:
        grow_x, grow_y = margin * (x2 - x1), margin * (y2 - y1)
    left = int(np.clip(np.floor(x1 - grow_x / 2), 0, width - 1))
    top = int(np.clip(np.floor(y1 - grow_y / 2), 0, height - 1))
    right = int(np.clip(np.ceil(x2 + grow_x / 2), left + 1, width))
    bottom = int(np.clip(np.ceil(y2 + grow_y / 2), top + 1, height))
    return left, top, right, bottom


def resize_to_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is `size` (aspect ratio kept), then pad with black, centred, to size x size."""
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def crop_face(
    rgb: np.ndarray, box: tuple[float, float, float, float] | np.ndarray, margin: float, size: int
) -> np.ndarray:
    """The (size, size, 3) uint8 RGB face crop of `box` with `margin` from an RGB image."""
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = expand_box(box, margin, width, height)
    return resize_to_square(rgb[y1:y2, x1:x2], size)
