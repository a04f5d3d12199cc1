"""Each loss against a reference computed by hand with numpy on small tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facetool.losses import get_loss


def batch(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1).float()
    return emb, torch.randint(0, classes, (n,), generator=g)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    rows = []
    for row, y in zip(logits, labels, strict=True):
        top = max(row)
        log_sum = top + math.log(sum(math.exp(v - top) for v in row))
        rows.append(log_sum - row[y])
    return sum(rows) / len(rows)


def reference_logits(emb, centres, labels, scale, target) -> np.ndarray:
    """s·cos θ_j for every class, with `target(θ_y)` in place of cos θ_y, element by element."""
    logits = np.zeros((len(emb), len(centres)))
    for i, x in enumerate(emb.astype(np.float64)):
        for j, w in enumerate(centres.astype(np.float64)):
            cos = float(np.dot(x, w) / np.linalg.norm(w))
            cos = min(max(cos, -1 + 1e-7), 1 - 1e-7)
            theta = math.acos(cos)
            logits[i, j] = scale * (target(theta, cos) if j == labels[i] else cos)
    return logits


def arc(m: float):
    def target(theta: float, cos: float) -> float:
        return math.cos(theta + m) if theta + m <= math.pi else cos - m * math.sin(m)

    return target


@pytest.mark.extras
@pytest.mark.parametrize("scale,margin", [(64.0, 0.5), (8.0, 0.2), (30.0, 1.2)])
def test_arcface_matches_cos_theta_plus_m(scale: float, margin: float) -> None:
    loss = get_loss("arcface", {"scale": scale, "margin": margin}, num_classes=5, embedding_dim=6)
    emb, labels = batch(9, 6, 5, seed=1)
    # one embedding sits almost opposite its class centre, where theta + m passes pi
    with torch.no_grad():
        emb[0] = -F.normalize(loss.centres[labels[0]], dim=0)
    centres = loss.centres.detach().numpy()
    expected = reference_logits(emb.numpy(), centres, labels.numpy(), scale, arc(margin))
    got = loss.logits(emb, labels).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * scale)
    value = loss(emb, labels).item()
    assert value == pytest.approx(cross_entropy(expected, labels.numpy()), rel=1e-4, abs=1e-4)


@pytest.mark.extras
def test_cosface_matches_cos_theta_minus_m() -> None:
    loss = get_loss("cosface", {"scale": 16.0, "margin": 0.35}, num_classes=4, embedding_dim=5)
    emb, labels = batch(8, 5, 4, seed=2)
    centres = loss.centres.detach().numpy()
    expected = reference_logits(emb.numpy(), centres, labels.numpy(), 16.0, lambda t, c: c - 0.35)
    np.testing.assert_allclose(loss.logits(emb, labels).detach().numpy(), expected, rtol=1e-4, atol=1e-3)
    assert loss(emb, labels).item() == pytest.approx(cross_entropy(expected, labels.numpy()), rel=1e-4)


def triplet_reference(emb: np.ndarray, alpha: float) -> float:
    t = len(emb) // 3
    a, p, n = emb[:t].astype(np.float64), emb[t : 2 * t].astype(np.float64), emb[2 * t :].astype(np.float64)
    return float(
        np.mean([max(0.0, ((a[i] - p[i]) ** 2).sum() - ((a[i] - n[i]) ** 2).sum() + alpha) for i in range(t)])
    )


def test_triplet_plugin_is_the_facenet_loss() -> None:
    loss = get_loss("triplet", num_classes=0, embedding_dim=4, margin=0.3)
    emb, labels = batch(12, 4, 3, seed=3)
    assert loss(emb, labels).item() == pytest.approx(triplet_reference(emb.numpy(), 0.3), rel=1e-5)
    assert list(loss.parameters()) == []


@pytest.mark.extras
@pytest.mark.parametrize("softmax", ["arcface", "cosface"])
def test_combination_is_the_weighted_sum(softmax: str) -> None:
    settings = {
        "softmax": softmax,
        "scale": 10.0,
        "margin": 0.3,
        "softmax_weight": 0.7,
        "triplet_weight": 2.5,
    }
    loss = get_loss("arcface-triplet", settings, num_classes=6, embedding_dim=4, margin=0.25)
    emb, labels = batch(15, 4, 6, seed=4)
    centres = loss.softmax.centres.detach().numpy()
    target = arc(0.3) if softmax == "arcface" else (lambda t, c: c - 0.3)
    ce = cross_entropy(reference_logits(emb.numpy(), centres, labels.numpy(), 10.0, target), labels.numpy())
    expected = 0.7 * ce + 2.5 * triplet_reference(emb.numpy(), 0.25)
    assert loss(emb, labels).item() == pytest.approx(expected, rel=1e-4)
    assert {name for name, _ in loss.named_parameters()} == {"softmax.centres"}


def batch_hard_reference(
    emb: np.ndarray, labels: np.ndarray, margin: str, alpha: float, scale: float, squared: bool
) -> tuple[float, set[int]]:
    """By loops: the mean over anchors with a positive and a negative of the loss of their farthest positive and
    nearest negative, and the rows that loss reaches (teaching anchors and their chosen pair)."""
    x = emb.astype(np.float64)
    per, reached = [], set()
    for i in range(len(x)):
        dist = [float(((x[i] - x[j]) ** 2).sum()) for j in range(len(x))]
        if not squared:
            dist = [math.sqrt(d) for d in dist]
        pos = [j for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(len(x)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        p = max(pos, key=lambda j: dist[j])
        n = min(neg, key=lambda j: dist[j])
        gap = dist[p] - dist[n]
        per.append(math.log1p(math.exp(scale * gap)) / scale if margin == "soft" else max(0.0, gap + alpha))
        if per[-1] > 0:
            reached |= {i, p, n}
    return (sum(per) / len(per) if per else 0.0), reached


@pytest.mark.extras
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"scale": 5.0},
        {"margin": "hinge"},
        {"margin": "hinge", "distance": "squared"},
        {"distance": "squared", "scale": 2.0},
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_matches_its_hardest_pairs_found_by_loops(settings: dict, seed: int) -> None:
    loss = get_loss("batch-hard", settings, num_classes=0, embedding_dim=5, margin=0.3)
    emb, labels = batch(14, 5, 5, seed=seed)
    labels[-1] = 99
    expected, reached = batch_hard_reference(
        emb.numpy(),
        labels.numpy(),
        settings.get("margin", "soft"),
        0.3,
        settings.get("scale", 1.0),
        settings.get("distance") == "squared",
    )
    emb.requires_grad_(True)
    value = loss(emb, labels)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert bool(torch.isfinite(emb.grad).all())
    assert set(torch.nonzero(emb.grad.abs().sum(dim=1)).flatten().tolist()) == reached


@pytest.mark.extras
def test_batch_hard_with_duplicate_faces_and_no_pairs_stays_finite() -> None:
    loss = get_loss("batch-hard", num_classes=0, embedding_dim=4)
    emb, _ = batch(6, 4, 1, seed=5)
    emb = torch.cat([emb, emb]).requires_grad_(True)
    labels = torch.arange(6).repeat(2)
    value = loss(emb, labels)
    value.backward()
    expected, _ = batch_hard_reference(emb.detach().numpy(), labels.numpy(), "soft", 0.0, 1.0, False)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert bool(torch.isfinite(emb.grad).all())
    alone = torch.arange(12)
    lone = loss(emb.detach(), alone)
    assert lone.item() == 0.0 and int(loss.active) == 0
