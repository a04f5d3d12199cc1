"""A model's embeddings of cached faces by one plain forward pass: the reference facetool's own embedding is
checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facetool.cache import open_cache
from facetool.models import load_embedding_model


def plain_embeddings(checkpoint: Path, cache_path: Path) -> dict[str, np.ndarray]:
    """Every cached crop embedded by one plain forward pass of the checkpoint's network: path -> unit vector."""
    model, info = load_embedding_model(checkpoint)
    with open_cache(cache_path) as cache:
        faces, paths = cache.read_faces(), cache.paths
    x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    x = F.interpolate(x, size=(info.image_size, info.image_size), mode="bilinear", antialias=True)
    with torch.no_grad():
        return dict(zip(paths, F.normalize(model(x), dim=1).numpy(), strict=True))
