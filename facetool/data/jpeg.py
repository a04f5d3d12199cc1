"""Decoding a round's JPEG faces in one batch on the accelerator (torchvision's `decode_jpeg`).

On a CUDA device the streamed source can have its workers hand over the stored JPEG bytes and decode them
here, in one call, on the GPU: the CPU then only reads bytes. `choose_decoder` says where decoding happens
and why; it falls back to the CPU workers whenever the device is not CUDA, the cache is not JPEG, or a trial
decode on the device fails (a torchvision built without nvjpeg, say). `decode_payloads` runs on any device,
so the byte path is the same code on a CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

from facetool.errors import FacetoolError, UsageError

Decode = Literal["auto", "workers", "device"]


@dataclass(frozen=True)
class DecoderChoice:
    """`on_device`: the parent decodes on the training device from bytes; else the workers decode."""

    on_device: bool
    reason: str


def decode_payloads(
    payloads: Sequence[np.ndarray], image_size: int, device: torch.device | str
) -> torch.Tensor:
    """(n, S, S, 3) uint8 RGB faces on `device` from JPEG payloads, decoded in one batch there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    if not payloads:
        return torch.empty((0, image_size, image_size, 3), dtype=torch.uint8, device=device)
    data = [torch.from_numpy(np.ascontiguousarray(p, np.uint8).reshape(-1)) for p in payloads]
    try:
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as exc:
        raise FacetoolError(f"a stored face image is corrupted ({' '.join(str(exc).split())})") from None
    if any(tuple(i.shape) != (3, image_size, image_size) for i in images):
        raise FacetoolError(f"a stored face image is not {image_size}x{image_size}")
    return torch.stack(images).permute(0, 2, 3, 1).contiguous()


def _probe(device: torch.device) -> str | None:
    """None when a JPEG decodes on `device`, else why not, in one line."""
    _, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    try:
        decode_payloads([buf.reshape(-1)], 16, device)
    except Exception as exc:  # any failure means: decode on the CPU workers instead
        return " ".join(str(exc).split())[:200] or type(exc).__name__
    return None


def choose_decoder(mode: Decode, device: torch.device, encoding: str) -> DecoderChoice:
    """Where a streamed source decodes its faces (see the module doc); "device" forces it, for tests too."""
    if mode not in ("auto", "workers", "device"):
        raise UsageError(f"decode {mode!r}: expected auto, workers or device")
    if mode == "workers":
        return DecoderChoice(False, "decoded by the workers: asked for")
    if encoding != "jpeg":
        return DecoderChoice(False, f"decoded by the workers: the cache stores {encoding} faces, not JPEG")
    if mode == "auto" and device.type != "cuda":
        return DecoderChoice(False, f"decoded by the workers: no JPEG decoding on {device.type}")
    failure = _probe(device)
    if failure is not None:
        return DecoderChoice(False, f"decoded by the workers: decode_jpeg on {device} failed ({failure})")
    return DecoderChoice(True, f"JPEG decoded on {device} in batches; the workers read bytes")
