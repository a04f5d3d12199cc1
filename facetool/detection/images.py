"""Decoding any supported image file into an upright RGB uint8 array, or a one-line reason why not."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facetool.errors import FacetoolError
from facetool.files import FileReadError, read_regular_file

BYTES_PER_PIXEL_BOUND = 8
METADATA_ALLOWANCE = 64 * 2**20
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
ALPHA_BACKGROUND = (255, 255, 255)


class ImageDecodeError(FacetoolError):
    """An image file that cannot be turned into pixels; the message is the reason recorded in the cache."""


def is_image_name(name: str) -> bool:
    """True when the file name has one of the supported extensions, in any case."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _sixteen_bit(image: Image.Image) -> np.ndarray:
    # PIL's own I;16 -> RGB conversion clips at 255; scale the full 16-bit range instead.
    values = np.asarray(image).astype(np.float32)
    grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _float_grey(image: Image.Image) -> np.ndarray:
    grey = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _over_background(image: Image.Image) -> np.ndarray:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))


def _plain(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


_MODE_CONVERTERS: dict[str, Callable[[Image.Image], np.ndarray]] = {
    "I;16": _sixteen_bit,
    "I;16L": _sixteen_bit,
    "I;16B": _sixteen_bit,
    "I;16N": _sixteen_bit,
    "I": _sixteen_bit,
    "F": _float_grey,
    "RGBA": _over_background,
    "RGBa": _over_background,
    "LA": _over_background,
    "La": _over_background,
    "PA": _over_background,
}


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode (grey, CMYK, palette, alpha, 16-bit) as a contiguous (H, W, 3) uint8 RGB array.

    Transparent pixels are composited over white; 16-bit grey is scaled, not clipped, to 8 bits.
    """
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        mode = "PA"
    converter = _MODE_CONVERTERS.get(mode, _plain)
    return np.array(converter(image), dtype=np.uint8, order="C")  # a writable copy


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode encoded image bytes to upright RGB uint8, honouring EXIF orientation.

    The pixel count is checked from the header before any pixel is decoded, so a decompression bomb
    costs nothing. Raises ImageDecodeError with the reason for empty, non-image, truncated or too-large data.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"image too large ({exc})") from None
        except UnidentifiedImageError:
            raise ImageDecodeError("not an image (format not recognised)") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageDecodeError(f"unreadable image header ({exc})") from None
        width, height = image.size
        if width * height > max_pixels:
            raise ImageDecodeError(
                f"image too large: {width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}"
            )
        if width == 0 or height == 0:
            raise ImageDecodeError(f"image has no pixels ({width}x{height})")
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageDecodeError(f"truncated or corrupt image data ({exc})") from None
        with contextlib.suppress(OSError, ValueError, SyntaxError, KeyError, TypeError):
            image = ImageOps.exif_transpose(image)  # a broken EXIF block keeps the pixels as stored
        try:
            return to_rgb_array(image)
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(f"unsupported pixel format {image.mode!r} ({exc})") from None


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file worth reading for an image of at most `max_pixels` pixels.

    No supported format stores more than 8 bytes a pixel (16-bit RGBA, uncompressed), plus metadata (EXIF, ICC
    profiles, thumbnails) well under 64 MiB; a larger file cannot hold an image that `max_pixels` admits.
    """
    return max_pixels * BYTES_PER_PIXEL_BOUND + METADATA_ALLOWANCE


def read_image(path: str | Path, max_pixels: int) -> np.ndarray:
    """Read and decode one image file; ImageDecodeError (the reason, without the path) when it cannot be.

    Every photo facetool reads comes through here: only a regular file is opened (a FIFO or a device such as
    `/dev/zero` is refused before anything is read), and never more than `max_file_bytes` of it.
    """
    try:
        data = read_regular_file(path, limit=max_file_bytes(max_pixels), what="image file")
    except FileReadError as exc:
        raise ImageDecodeError(exc.reason) from None
    return decode_image(data, max_pixels)
