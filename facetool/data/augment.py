"""Turning a batch of uint8 faces into network input on the device, with training-time augmentation.

Everything runs as batched tensor operations on the faces' device (one antialiased resize, then one affine
resample for crop, flip and the final size; per-image colour factors), so augmentation costs no host work and
no per-image Python loop. The antialiased resize is the one `facetool.data.transforms.to_input` applies for
validation, `facetool eval` and `facetool embed`; with random crops it goes to image_size / crop_scale, so
that the crop is then sampled down to image_size, never up: training faces are as sharp as test faces and
free of the aliasing of a resample straight from a larger cache (160 px faces for a 64 px network, say).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facetool.config.train import AugmentConfig
from facetool.data.transforms import resize, to_input

_GREY = (0.299, 0.587, 0.114)
CHUNK = 256  # faces converted to float at a time, so a round of large crops never exists as float whole


def prepare(faces: torch.Tensor, image_size: int) -> torch.Tensor:
    """Standardised float NCHW of `image_size`, no augmentation (validation and mining of clean faces)."""
    return to_input(faces, faces.device, image_size)


class Augmenter:
    """Random crop, horizontal flip and colour jitter of uint8 NHWC faces, drawn from a given generator."""

    def __init__(self, config: AugmentConfig, image_size: int) -> None:
        self.config = config
        self.image_size = image_size

    def working_size(self, face_size: int) -> int:
        """The side faces are resized to before cropping: big enough that the crop never upsamples."""
        if not self.config.random_crop:
            return self.image_size
        return min(face_size, math.ceil(self.image_size / self.config.crop_scale))

    def _uniform(
        self, n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) * (high - low) + low

    def _geometry(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        cfg = self.config
        scale = torch.ones(n, device=device)
        shift = torch.zeros(n, 2, device=device)
        if cfg.random_crop:
            scale = self._uniform(n, cfg.crop_scale, 1.0, generator, device)
            room = 1.0 - scale
            shift = (torch.rand(n, 2, generator=generator, device=device) * 2 - 1) * room[:, None]
        sign_x = torch.ones(n, device=device)
        if cfg.flip:
            flips = torch.rand(n, generator=generator, device=device) < 0.5
            sign_x = torch.where(flips, -1.0, 1.0)
        if not cfg.random_crop and x.shape[-1] == self.image_size:
            return torch.where(sign_x.view(n, 1, 1, 1) < 0, x.flip(-1), x)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = scale * sign_x
        theta[:, 1, 1] = scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, [n, 3, self.image_size, self.image_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, device = x.shape[0], x.device
        cfg = self.config
        x = x * self._uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator, device).view(n, 1, 1, 1)
        grey = (x * torch.tensor(_GREY, device=device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        c = self._uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator, device).view(n, 1, 1, 1)
        x = (x - grey.mean((2, 3), keepdim=True)) * c + grey.mean((2, 3), keepdim=True)
        grey = (x * torch.tensor(_GREY, device=device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        s = self._uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, generator, device).view(n, 1, 1, 1)
        return ((x - grey) * s + grey).clamp(0.0, 1.0)

    def to_working(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> (N, 3, W, W) float in [0, 1] at the working size; the part that draws nothing.

        Each face is resized on its own, so the result for a face never depends on the others beside it: faces
        resized once up front (`facetool.data.resized`) equal faces resized in every round, bit for bit. The
        result is channels last in memory, as the faces it comes from are.
        """
        size = self.working_size(faces.shape[1])
        parts = [resize(part.permute(0, 3, 1, 2).float() / 255.0, size) for part in faces.split(CHUNK)]
        return torch.cat(parts).contiguous(memory_format=torch.channels_last)

    def from_working(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Faces from `to_working` -> (N, 3, image_size, image_size) standardised float, augmented."""
        if self.config.random_crop or self.config.flip:
            x = self._geometry(x, generator)
        if self.config.color_jitter:
            x = self._colour(x, generator)
        return (x * 255.0 - 127.5) / 128.0

    def __call__(self, faces: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, S, S, 3) uint8 on any device -> (N, 3, image_size, image_size) standardised float, augmented."""
        return self.from_working(self.to_working(faces), generator)
