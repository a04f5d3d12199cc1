"""Turning cached uint8 faces into network input: one definition shared by training, eval and embed."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float NCHW images resized to `size` x `size` (bilinear, antialiased); unchanged when already that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def to_input(
    faces: np.ndarray | torch.Tensor, device: torch.device | str = "cpu", image_size: int | None = None
) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB faces -> (N, 3, S, S) float32 on `device`, standardised as FaceNet does.

    The standardisation is facenet-pytorch's `fixed_image_standardization`: (x - 127.5) / 128. With
    `image_size`, faces of another size are resized to it, so a model trained at one size can be fed a cache
    cropped at another exactly as training fed it. The uint8 data is moved first: a four times smaller copy.
    """
    tensor = torch.as_tensor(faces)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 faces, got {tuple(tensor.shape)} {tensor.dtype}")
    tensor = tensor.to(device, non_blocking=True)
    x = (tensor.permute(0, 3, 1, 2).float() - 127.5) / 128.0
    return x if image_size is None else resize(x, image_size)
