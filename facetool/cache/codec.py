"""The image codec: a face as stored (JPEG bytes or a raw array) and back to RGB pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from facetool.cache.records import CacheFormat
from facetool.errors import CacheError

_DECODE_CHUNK = 256


def encode_face(face: np.ndarray, fmt: CacheFormat) -> np.ndarray:
    """RGB uint8 face -> the stored payload: JPEG bytes as a 1-D uint8 array, or the array itself."""
    if fmt.encoding == "raw":
        return np.ascontiguousarray(face)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, fmt.jpeg_quality]
    )
    if not ok:
        raise CacheError("JPEG encoding of a face failed")
    return buf.reshape(-1)


def decode_into(payloads: Sequence[np.ndarray], out: np.ndarray, where: str) -> None:
    """Decode JPEG payloads into `out` (n, S, S, 3) RGB, in threads (OpenCV releases the GIL)."""

    def work(start: int) -> None:
        for i in range(start, min(start + _DECODE_CHUNK, len(payloads))):
            img = cv2.imdecode(payloads[i], cv2.IMREAD_COLOR_RGB)
            if img is None or img.shape != out.shape[1:]:
                raise CacheError(f"{where}: a stored face image is corrupted")
            out[i] = img

    starts = range(0, len(payloads), _DECODE_CHUNK)
    if len(payloads) <= _DECODE_CHUNK:
        for s in starts:
            work(s)
        return
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(work, starts))
