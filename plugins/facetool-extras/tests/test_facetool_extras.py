"""facetool-extras: discovery through entry points, the distance-weighted rule, the tiny CNN."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from facetool_extras.distance_weighted import MIN_DISTANCE
from facetool_extras.tiny_cnn import TinyCNN

from facetool import plugins
from facetool.errors import ModelFileError, UsageError
from facetool.losses import triplet_loss
from facetool.miners import get_miner
from facetool.models import build_backbone


def test_plugins_are_found_through_entry_points() -> None:
    rows = {(r.kind, r.name): r for r in plugins.list_plugins()}
    for key in (("miner", "distance-weighted"), ("backbone", "tiny-cnn")):
        assert rows[key].package == "facetool-extras" and rows[key].status == "ok"


def expected_probabilities(emb: np.ndarray, labels: np.ndarray, anchor: int) -> np.ndarray:
    """The paper's rule written out independently: weight 1/q(d), q(d) = d^(n-2) (1 - d²/4)^((n-3)/2)."""
    n = emb.shape[1]
    d = np.sqrt(((emb[anchor] - emb) ** 2).sum(axis=1)).astype(np.float64)
    d = np.maximum(d, MIN_DISTANCE)
    log_q = (n - 2) * np.log(d) + (n - 3) / 2 * np.log(np.maximum(1 - d * d / 4, 1e-6))
    weights = np.where(
        labels != labels[anchor], np.exp(-(log_q - log_q[labels != labels[anchor]].min())), 0.0
    )
    return weights / weights.sum()


def batch(seed: int, n: int = 40, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    return emb, torch.arange(n) // 4


def test_every_pair_gets_a_valid_negative() -> None:
    emb, labels = batch(0)
    result = get_miner("distance-weighted", generator=torch.Generator().manual_seed(0))(emb, labels, 0.2)
    assert result.num_pairs == 10 * 6 == result.num_triplets
    assert bool((labels[result.negatives] != labels[result.anchors]).all())
    pairs = set(zip(result.anchors.tolist(), result.positives.tolist(), strict=True))
    assert pairs == {(a, p) for a in range(40) for p in range(a + 1, 40) if a // 4 == p // 4}


def test_negatives_follow_the_inverse_density_weights() -> None:
    g = torch.Generator().manual_seed(1)
    others = torch.nn.functional.normalize(torch.randn(40, 4, generator=g), dim=1)
    anchor_identity = torch.nn.functional.normalize(torch.randn(1, 4, generator=g), dim=1).repeat(300, 1)
    emb = torch.cat([anchor_identity, others])
    labels = torch.cat([torch.zeros(300, dtype=torch.long), 1 + torch.arange(40) // 4])
    probs = expected_probabilities(emb.numpy(), labels.numpy(), 0)
    miner = get_miner("distance-weighted", generator=torch.Generator().manual_seed(1))
    counts = np.zeros(len(labels))
    for _ in range(30):
        r = miner(emb, labels, 0.2)
        np.add.at(counts, r.negatives[r.anchors == 0].numpy(), 1)
    assert counts.sum() == 30 * 299 and counts[:300].sum() == 0
    freq = counts / counts.sum()
    uniform = np.where(labels.numpy() != 0, 1 / 40, 0.0)
    assert 0.5 * np.abs(uniform - probs).sum() > 0.2, "the check below must tell 1/q(d) from uniform"
    assert 0.5 * np.abs(freq - probs).sum() < 0.05, "total variation distance from 1/q(d) too large"


def test_distances_below_half_are_clipped_to_equal_weight() -> None:
    emb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.995, 0.0998, 0.0], [0.9999, 0.0141, 0.0]])
    emb = torch.nn.functional.normalize(emb, dim=1)
    labels = torch.tensor([0, 0, 1, 2])
    probs = expected_probabilities(emb.numpy(), labels.numpy(), 0)
    assert probs[2] == pytest.approx(probs[3])
    miner = get_miner("distance-weighted", generator=torch.Generator().manual_seed(2))
    drawn = torch.cat([miner(emb, labels, 0.2).negatives for _ in range(400)])
    share = float((drawn == 2).float().mean())
    assert abs(share - 0.5) < 0.1


def test_seeded_sampling_is_reproducible_and_single_identity_is_empty() -> None:
    emb, labels = batch(3)
    a = get_miner("distance-weighted", generator=torch.Generator().manual_seed(5))(emb, labels, 0.2)
    b = get_miner("distance-weighted", generator=torch.Generator().manual_seed(5))(emb, labels, 0.2)
    assert torch.equal(a.negatives, b.negatives)
    empty = get_miner("distance-weighted")(emb, torch.zeros(40, dtype=torch.long), 0.2)
    assert empty.num_triplets == 0 and empty.num_pairs == 780


@pytest.mark.parametrize("name", ["tiny-cnn", "tiny-cnn-gdc", "small-cnn", "small-cnn-gdc"])
@pytest.mark.parametrize("size", [16, 32, 64, 70, 160])
def test_cnns_embed_any_supported_size(name: str, size: int) -> None:
    model = build_backbone(name, embedding_dim=32, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 32)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_tiny_cnn_learns_from_triplets() -> None:
    torch.manual_seed(0)
    model = build_backbone("tiny-cnn", embedding_dim=16, image_size=32)
    emb_in, labels = torch.randn(24, 3, 32, 32), torch.arange(24) // 6
    emb_in += labels[:, None, None, None].float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    miner = get_miner("random", generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(15):
        emb = model(emb_in)
        r = miner(emb, labels, 0.2)
        loss = triplet_loss(emb[r.anchors], emb[r.positives], emb[r.negatives], 0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_tiny_cnn_weights_round_trip_and_errors(tmp_path: Path) -> None:
    trained = TinyCNN(embedding_dim=8)
    path = tmp_path / "tiny.pt"
    torch.save(trained.state_dict(), path)
    model = build_backbone("tiny-cnn", embedding_dim=8, pretrained=str(path), image_size=32)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), trained.state_dict().values(), strict=True)
    )
    with pytest.raises(ModelFileError, match="not tiny-cnn weights"):
        build_backbone("tiny-cnn", embedding_dim=16, pretrained=str(path), image_size=32)
    with pytest.raises(UsageError, match="image_size 8: tiny-cnn needs at least 16"):
        build_backbone("tiny-cnn", image_size=8)
    with pytest.raises(ModelFileError, match="not small-cnn weights"):
        build_backbone("small-cnn", embedding_dim=8, pretrained=str(path), image_size=32)


def test_small_cnn_is_the_tiny_one_with_twice_the_channels() -> None:
    tiny = build_backbone("tiny-cnn", image_size=32)
    small = build_backbone("small-cnn", embedding_dim=128, image_size=32)
    convs = [m.out_channels for m in small.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [2 * m.out_channels for m in tiny.modules() if isinstance(m, torch.nn.Conv2d)]
    assert 400_000 < sum(p.numel() for p in small.parameters()) < 450_000


def test_gdc_head_weighs_where_a_feature_sits_and_average_pooling_does_not() -> None:
    torch.manual_seed(0)
    gdc = build_backbone("tiny-cnn-gdc", image_size=64).eval()
    average = build_backbone("tiny-cnn", image_size=64).eval()
    features = torch.rand(1, 128, 4, 4)
    moved = torch.roll(features, shifts=(1, 2), dims=(2, 3))
    with torch.no_grad():
        assert torch.allclose(average.pool(features), average.pool(moved), atol=1e-6)
        assert not torch.allclose(gdc.pool(features), gdc.pool(moved), atol=1e-3)
    depthwise = gdc.pool[0]
    assert depthwise.groups == 128 and tuple(depthwise.weight.shape) == (128, 1, 4, 4)


def test_tiny_cnn_keeps_its_parameter_names_for_older_checkpoints() -> None:
    names = {k.split(".")[0] for k in build_backbone("tiny-cnn", image_size=32).state_dict()}
    assert names == {"features", "head"}
    gdc = build_backbone("tiny-cnn-gdc", image_size=64)
    assert (
        sum(p.numel() for p in gdc.parameters())
        - sum(p.numel() for p in build_backbone("tiny-cnn", image_size=64).parameters())
        == 128 * 16 + 2 * 128
    )


def test_weights_are_finite_for_antipodal_points() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    r = get_miner("distance-weighted")(emb, torch.tensor([0, 0, 1, 2]), 0.2)
    assert r.num_triplets == 1 and not math.isnan(float(r.negatives[0]))


def test_nan_embeddings_are_never_sampled() -> None:
    emb, labels = batch(4)
    emb[5] = float("nan")
    r = get_miner("distance-weighted", generator=torch.Generator().manual_seed(0))(emb, labels, 0.2)
    assert r.num_triplets > 0
    assert not bool((r.anchors == 5).any()) and not bool((r.negatives == 5).any())
    assert get_miner("distance-weighted")(torch.full_like(emb, float("nan")), labels, 0.2).num_triplets == 0
