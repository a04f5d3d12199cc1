"""Where the decoded face set lives during training: accelerator memory when it fits, else (pinned) host memory.

The faces are decoded once into one uint8 tensor; each round then only gathers indices. On the device a
round costs no copy at all; from pinned host memory it costs one asynchronous copy of the round's faces.
"""

from __future__ import annotations

import torch

from facetool.data.faceset import FaceSet

DEVICE_SHARE = 0.5


def choose_placement(mode: str, device: torch.device, nbytes: int, free_bytes: int | None) -> str:
    """ "device" or "host" for `mode` auto/device/host; auto takes the device when the faces fit in half its free memory."""
    if device.type == "cpu":
        return "device"
    if mode == "auto":
        return "device" if free_bytes is not None and nbytes <= DEVICE_SHARE * free_bytes else "host"
    return mode


def _free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def place_faceset(faces: FaceSet, device: torch.device, mode: str = "auto") -> tuple[FaceSet, str]:
    """The face set on `device` or in host memory (pinned when the device is CUDA), and where it went."""
    nbytes = faces.faces.numel() * faces.faces.element_size()
    where = choose_placement(mode, device, nbytes, _free_bytes(device))
    if where == "device":
        return FaceSet(faces.faces.to(device), faces.labels.to(device), faces.identities), where
    pixels = faces.faces.cpu()
    if device.type == "cuda":
        pixels = pixels.pin_memory()
    return FaceSet(pixels, faces.labels.to(device), faces.identities), where


def gather(faces: FaceSet, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The faces at `indices` on `device`, gathered where they live and copied asynchronously if needed."""
    picked = faces.faces.index_select(0, indices.to(faces.faces.device))
    if picked.device == device:
        return picked
    if picked.device.type == "cpu" and device.type == "cuda":
        picked = picked.pin_memory()
    return picked.to(device, non_blocking=True)
