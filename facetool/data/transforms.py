"""Turning cached uint8 faces into network input: one definition shared by training, eval and embed."""

from __future__ import annotations

import numpy as np
import torch


def to_input(faces: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB faces -> (N, 3, H, W) float32 on `device`, standardised as FaceNet does.

    The standardisation is facenet-pytorch's `fixed_image_standardization`: (x - 127.5) / 128.
    The uint8 data is moved first, so the host-to-device copy is four times smaller.
    """
    tensor = torch.as_tensor(faces)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 faces, got {tuple(tensor.shape)} {tensor.dtype}")
    tensor = tensor.to(device, non_blocking=True)
    return (tensor.permute(0, 3, 1, 2).float() - 127.5) / 128.0
