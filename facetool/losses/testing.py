"""A contract check a loss plugin's author runs in their own tests: `check_loss("my-loss")`.

It builds the loss (by registered name, so the entry point is exercised too, or from the class) with its
default settings and feeds it random normalised embeddings in the layout its `needs` declares, then checks
what facetool relies on: a finite scalar with a gradient, finite gradients for the embeddings and for every
parameter the loss holds, a state dict that restores the same loss, and the same value twice for the same
inputs. Any failure is an AssertionError saying which rule broke.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from facetool.losses import NEEDS, Loss, get_loss, loss_class


def _inputs(loss: Loss, triplets: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = 3 * triplets
    emb = F.normalize(torch.randn(n, loss.embedding_dim, generator=g), dim=1)
    if loss.needs == "triplets":
        anchors = torch.arange(triplets) % loss.num_classes
        labels = torch.cat([anchors, anchors, (anchors + 1) % loss.num_classes])
    elif loss.needs == "groups":
        labels = (torch.arange(n) // 3) % loss.num_classes
    else:
        labels = torch.randint(0, loss.num_classes, (n,), generator=g)
    return emb, labels


def check_loss(
    loss: str | type[Loss],
    settings: dict[str, Any] | None = None,
    *,
    num_classes: int = 7,
    embedding_dim: int = 8,
    triplets: int = 5,
    seed: int = 0,
) -> Loss:
    """Assert that `loss` (a registered name or a Loss subclass) keeps the loss contract; returns the instance."""
    name = loss if isinstance(loss, str) else loss.name
    if isinstance(loss, str):
        cls = loss_class(loss)
        built = get_loss(loss, settings, num_classes=num_classes, embedding_dim=embedding_dim)
    else:
        cls = loss
        parsed = cls.Settings.model_validate(settings or {})
        built = cls(parsed, num_classes=num_classes, embedding_dim=embedding_dim)
    assert isinstance(built, Loss), f"{name}: not a facetool.losses.Loss"
    assert cls.needs in NEEDS, f"{name}: needs is {cls.needs!r}"
    assert isinstance(cls.description, str) and cls.description.strip(), f"{name}: no description"
    torch.manual_seed(seed)
    emb, labels = _inputs(built, triplets, seed)
    emb.requires_grad_(True)
    value = built(emb, labels)
    assert torch.isfinite(value), f"{name}: loss {value.item()} is not finite"
    value.backward()
    assert emb.grad is not None and bool(torch.isfinite(emb.grad).all()), f"{name}: bad embedding gradient"
    for pname, param in built.named_parameters():
        assert param.grad is not None, f"{name}: parameter {pname} gets no gradient"
        assert bool(torch.isfinite(param.grad).all()), f"{name}: parameter {pname} has a non-finite gradient"
    with torch.no_grad():
        again = built(emb.detach(), labels)
    assert torch.equal(again, value.detach()), f"{name}: the same inputs gave {again} then {value}"
    twin = cls(built.settings, num_classes=num_classes, embedding_dim=embedding_dim)
    twin.load_state_dict(built.state_dict())
    with torch.no_grad():
        restored = twin(emb.detach(), labels)
    assert torch.equal(restored, value.detach()), f"{name}: a restored state dict gives another loss"
    return built
