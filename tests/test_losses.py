"""Triplet loss: the formula on hand-checkable values, gradients, and the empty-batch error."""

import pytest
import torch

from facetool.losses import triplet_loss


def test_loss_is_the_mean_hinge_of_squared_distances() -> None:
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.1, 0.0]])
    n = torch.tensor([[0.0, 0.5], [0.0, 2.0]])
    # pair 1: 1 − 0.25 + 0.2 = 0.95; pair 2: 0.01 − 4 + 0.2 < 0 → 0
    assert triplet_loss(a, p, n, 0.2).item() == pytest.approx(0.95 / 2)


def test_loss_matches_a_loop_on_random_embeddings() -> None:
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(50, 16, generator=g), dim=1) for _ in range(3))
    expected = sum(
        max(0.0, float(((a[i] - p[i]) ** 2).sum() - ((a[i] - n[i]) ** 2).sum()) + 0.3) for i in range(50)
    )
    assert triplet_loss(a, p, n, 0.3).item() == pytest.approx(expected / 50, rel=1e-5)


def test_gradient_flows_only_through_active_triplets() -> None:
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    p = torch.tensor([[1.0, 0.0], [0.1, 0.0]])
    n = torch.tensor([[0.0, 0.5], [0.0, 2.0]])
    triplet_loss(a, p, n, 0.2).backward()
    assert a.grad is not None
    assert torch.count_nonzero(a.grad[0]) > 0 and torch.count_nonzero(a.grad[1]) == 0


def test_empty_batch_raises_instead_of_nan() -> None:
    empty = torch.empty(0, 8)
    with pytest.raises(ValueError, match="empty"):
        triplet_loss(empty, empty, empty, 0.2)


def test_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="one shape"):
        triplet_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 4), 0.2)
