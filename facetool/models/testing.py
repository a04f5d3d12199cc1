"""A contract check a backbone plugin's author runs in their own tests: `check_backbone("my-net")`.

It builds the backbone by registered name (so the entry point, an alias and the `[backbone]` settings are
exercised too) with its default or given settings; building already checks that a (2, 3, S, S) batch gives
(2, embedding_dim) L2-normalised rows. On top it checks what training and loading rely on: settings that
build from defaults, a description, the same weights from the same torch seed (recipes repeat), finite
gradients reaching the weights in train mode, the same rows for one face alone or in a batch (eval mode), and
a state dict that restores the same network into a fresh build (checkpoints load). Any failure is an
AssertionError saying which rule broke.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from facetool.models.backbone import backbone_plugin, build_backbone, settings_model
from facetool.plugins import BACKBONES, load_plugin


def check_backbone(
    name: str,
    settings: Mapping[str, Any] | None = None,
    *,
    embedding_dim: int = 8,
    image_size: int = 80,
    seed: int = 0,
) -> nn.Module:
    """Assert that backbone `name` keeps the backbone contract; returns a model built with `seed`."""

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return build_backbone(name, settings, embedding_dim=embedding_dim, dropout=0.0, image_size=image_size)

    factory, _ = backbone_plugin(name, settings)
    settings_model(factory, f"backbone {name!r}")()  # every setting has a default
    described = getattr(load_plugin(BACKBONES, name), "description", None) or factory.__doc__
    assert isinstance(described, str) and described.strip(), f"{name}: no description (or docstring)"
    model = build()
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    faces = torch.randn(3, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    model.train()
    out = model(faces)
    assert out.shape == (3, embedding_dim), f"{name}: train-mode output {tuple(out.shape)}"
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads, f"{name}: no parameter gets a gradient"
    assert all(bool(torch.isfinite(g).all()) for g in grads), f"{name}: a gradient is not finite"
    model.eval()
    fresh = build().eval()
    assert list(fresh.state_dict()) == list(initial), f"{name}: two builds have different parameter names"
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, initial[key]), f"{name}: the same torch seed gave other weights ({key})"
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        whole, alone, restored = model(faces), model(faces[:1]), fresh(faces)
    assert torch.allclose(whole[:1], alone, atol=1e-5), f"{name}: a face's embedding depends on its batch"
    assert torch.equal(whole, restored), f"{name}: a restored state dict gives other embeddings"
    return model
