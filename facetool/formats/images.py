"""What an encoded image is without decoding it: its size and, for a JPEG, the quality it was written with.

Imports store the bytes they are given; they read only JPEG headers (SOF for the size, DQT for the quality), so
an import runs at disk speed. Other formats (PNG, ...) are decoded once to learn their size.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

# libjpeg's base luminance table (ITU T.81 Annex K): its entries scaled by the quality give the file's table 0.
_LUMINANCE = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    np.int64,
)  # fmt: skip
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _table_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return int(np.clip((_LUMINANCE * scale + 50) // 100, 1, 255).sum())


_SUMS = np.array([_table_sum(q) for q in range(1, 101)])


def _jpeg_walk(data: bytes) -> tuple[int, int, int | None, int] | None:
    """`jpeg_header`'s answer and the number of leading bytes it depends on (through the SOF segment)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, quality, n = 2, None, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xDB and quality is None and body and body[0] & 0x0F == 0:
            wide = body[0] >> 4
            table = np.frombuffer(body[1 : 1 + 64 * (wide + 1)], ">u2" if wide else "u1").astype(np.int64)
            quality = int(np.argmin(np.abs(_SUMS - int(table.sum())))) + 1 if len(table) == 64 else None
        elif marker in _SOF and len(body) >= 5:
            height, width = struct.unpack_from(">HH", body, 1)
            return height, width, quality, min(n, pos + 2 + length)
        elif marker == 0xDA:
            return None
        pos += 2 + length
    return None


def jpeg_header(data: bytes) -> tuple[int, int, int | None] | None:
    """(height, width, libjpeg quality or None) read from a JPEG's markers; None when it is not a JPEG."""
    walked = _jpeg_walk(data)
    return None if walked is None else walked[:3]


def jpeg_header_length(data: bytes) -> int | None:
    """How many leading bytes `jpeg_header(data)` reads: every JPEG that starts with the same bytes has the same
    header answer (a set written by one encoder shares them, so one comparison checks an image's size)."""
    walked = _jpeg_walk(data)
    return None if walked is None else walked[3]


def image_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) of an encoded image; None when it cannot be read."""
    header = jpeg_header(data)
    if header is not None:
        return header[0], header[1]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if image is None else (int(image.shape[0]), int(image.shape[1]))
