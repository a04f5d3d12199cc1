"""Turning cached uint8 faces into network input and into embeddings: one definition shared by training, eval
and embed.

Test-time flip convention: with `flip=True` a face's embedding is the sum of the embeddings of the face and of
its horizontal mirror, re-normalised to unit length (not the concatenation, which doubles the size and is not
re-normalised). Embeddings are always L2-normalised float32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def embed_faces(
    model: nn.Module,
    faces_uint8_nhwc: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    flip: bool = False,
    image_size: int | None = None,
) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB faces -> (N, D) float32 L2-normalised embeddings.

    The one embedding function of facetool (eval, embed and training's mining pass). The faces go through
    `to_input` (resized to `image_size`, the model's input size, when given) `batch_size` at a time; the
    model runs in eval mode without gradients, moved to `device` (as `nn.Module.to` does), and gets its
    previous train/eval mode back on return.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    target = torch.device(device)
    model.to(target)
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.inference_mode():
            for start in range(0, len(faces_uint8_nhwc), batch_size):
                x = to_input(faces_uint8_nhwc[start : start + batch_size], target, image_size)
                out = model(x).float()
                if flip:
                    out = out + model(torch.flip(x, dims=[3])).float()
                parts.append(F.normalize(out, dim=1).cpu())
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(parts).numpy().astype(np.float32, copy=False)
