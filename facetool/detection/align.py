"""Five-point alignment: the landmarks mapped onto insightface's template by a least-squares similarity transform.

The transform is Umeyama's (1991) closed-form least-squares rotation, uniform scale and translation; the warp is
`cv2.warpAffine` with bilinear interpolation and a black border. With the template scaled as insightface's
`estimate_norm` scales it, `align_face` gives insightface's `norm_crop` for the same landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

# insightface's `arcface_dst` for a 112 x 112 face: left eye, right eye, nose tip, left and right mouth corner.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
TEMPLATE_NAME = "insightface arcface_dst (112 x 112)"


def template(size: int) -> np.ndarray:
    """The five template points for a `size` x `size` crop, as insightface's `estimate_norm` places them.

    A multiple of 112 scales the 112-px template; any other size scales it by size/128 and shifts it right by
    8 * size/128 (the template centred in a 128-px square).
    """
    if size % 112 == 0:
        ratio, shift = size / 112.0, 0.0
    else:
        ratio = size / 128.0
        shift = 8.0 * ratio
    points = TEMPLATE_112 * ratio
    points[:, 0] += shift
    return points


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix of the similarity (rotation, uniform scale, translation) that maps `src` onto `dst` (both
    (N, 2), N >= 2) with the least squared error: Umeyama's estimate, reflection excluded."""
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    signs = np.ones(2)
    if np.linalg.det(covariance) < 0:
        signs[1] = -1.0
    u, singular, vt = np.linalg.svd(covariance)
    rotation = u @ np.diag(signs) @ vt
    variance = src_c.var(axis=0).sum()
    scale = 1.0 / variance * (singular @ signs) if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean)
    matrix[:, :2] = rotation * scale
    return matrix


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, 3) crop of an RGB image whose five `landmarks` (5, 2) land on the template."""
    matrix = similarity_transform(landmarks, template(size))
    return cv2.warpAffine(rgb, matrix, (size, size), borderValue=0.0)


def has_landmarks(landmarks: np.ndarray | None) -> bool:
    """Whether a face's landmarks are all present and finite."""
    return landmarks is not None and bool(np.isfinite(landmarks).all())
