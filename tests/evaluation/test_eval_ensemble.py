"""Several models evaluated as one: their distances averaged, their trained people pooled, from the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facetool.cache import open_cache
from facetool.config.evaluate import EvalConfig
from facetool.evaluation.metrics import PairSplit, evaluate_splits
from facetool.evaluation.pairs import read_pairs
from facetool.identities import identity_digests
from facetool.inference import EnsembleEmbedder, embedder_for
from facetool.models import build_backbone
from facetool.models.checkpoint import make_checkpoint, save_checkpoint


def tiny_checkpoint(path: Path, seed: int, people: list[str]) -> Path:
    """An untrained test-cnn (48 px) that says it was trained on `people`."""
    torch.manual_seed(seed)
    net = build_backbone("test-cnn", embedding_dim=16, image_size=48)
    backbone = {"name": "test-cnn", "embedding_dim": 16, "dropout": 0.0, "image_size": 48}
    checkpoint = make_checkpoint(
        model=net.state_dict(),
        backbone=backbone,
        config={},
        epoch=0,
        history=[],
        train_identities=identity_digests(people),
    )
    save_checkpoint(checkpoint, path)
    return path


def squared(emb: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return ((emb[first] - emb[second]) ** 2).sum(1)


def test_ensemble_distances_are_the_mean_of_its_models(checkpoint, pair_cache, tmp_path):
    tiny = tiny_checkpoint(tmp_path / "a.pth", 1, ["Aaron_Peirsol"])
    settings = EvalConfig(flip=True, device="cpu")
    ensemble, card = embedder_for([checkpoint, tiny], settings)
    members = [embedder_for(path, settings)[0] for path in (checkpoint, tiny)]
    with open_cache(pair_cache) as cache:
        faces = cache.read_faces()
    emb = ensemble(faces)
    assert isinstance(ensemble, EnsembleEmbedder) and card is None
    assert emb.shape == (len(faces), 64 + 16) and ensemble.embedding_dim == 80
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    first, second = np.random.default_rng(0).integers(len(faces), size=(2, 200))
    mean = np.mean([squared(m(faces), first, second) for m in members], axis=0)
    assert np.allclose(squared(emb, first, second), mean, atol=1e-5)
    assert ensemble.info.train_identities is None, "one member does not say whom it was trained on"

    other = tiny_checkpoint(tmp_path / "b.pth", 2, ["Zico", "Aaron_Peirsol"])
    both, _ = embedder_for([tiny, other], settings)
    assert both.info.train_identities == tuple(identity_digests(["Aaron_Peirsol", "Zico"]))
    with pytest.raises(ValueError, match="at least two"):
        EnsembleEmbedder(members[:1])


def test_eval_of_two_checkpoints_scores_their_mean_distance(facetool_cli, pair_cache, small_pairs, tmp_path):
    test_pairs, train_pairs = read_pairs(small_pairs.dev_test), read_pairs(small_pairs.dev_train)
    trained = sorted(test_pairs.people)[:1]
    paths = [tiny_checkpoint(tmp_path / "a.pth", 1, []), tiny_checkpoint(tmp_path / "b.pth", 2, trained)]
    out = tmp_path / "out"
    result = facetool_cli(
        "eval",
        *paths,
        "--data",
        pair_cache,
        "--pairs",
        small_pairs.dev_test,
        "--train-pairs",
        small_pairs.dev_train,
        "--flip",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())

    settings = EvalConfig(flip=True, device="cpu")
    with open_cache(pair_cache) as cache:
        row = {path: i for i, path in enumerate(cache.paths)}
        faces = cache.read_faces()
    files = [train_pairs, test_pairs]
    first = np.array([row[p.path1] for f in files for p in f.pairs])
    second = np.array([row[p.path2] for f in files for p in f.pairs])
    mean = np.mean([squared(embedder_for(p, settings)[0](faces), first, second) for p in paths], axis=0)
    is_test = np.arange(len(mean)) >= len(train_pairs)
    issame = np.concatenate([f.issame for f in files])
    expected = evaluate_splits(mean, issame, [PairSplit(train=~is_test, test=is_test)])
    assert report["accuracy"] == pytest.approx(expected.accuracy_mean)
    assert report["auc"] == pytest.approx(expected.auc)
    assert report["held_out"] is False and report["trained_identities_in_pairs"] == 1
    assert "NOT HELD OUT" in result.stdout
