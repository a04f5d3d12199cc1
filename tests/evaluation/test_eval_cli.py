"""`facetool eval` as a real subprocess: end to end on real faces, and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from facetool.cache import open_cache
from facetool.evaluation.run import evaluate_on_pairs
from facetool.models import load_embedding_model


def test_eval_checkpoint_on_a_cache_end_to_end(facetool_cli, checkpoint, pair_cache, small_pairs, tmp_path):
    out = tmp_path / "out"
    result = facetool_cli(
        "eval",
        checkpoint,
        "--data",
        pair_cache,
        "--pairs",
        small_pairs.view2,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    model, _ = load_embedding_model(checkpoint)
    with open_cache(pair_cache) as cache:
        expected = evaluate_on_pairs(model, cache, small_pairs.view2)
    assert report["fold_accuracy"] == pytest.approx(expected.fold_accuracy)
    assert report["auc"] == pytest.approx(expected.auc)
    assert report["num_pairs"] == 12 and report["protocol"] == "2-fold"
    assert "mean" in result.stdout and f"accuracy {expected.accuracy:.4f}" in result.stdout


def test_eval_one_fold(facetool_cli, checkpoint, pair_cache, small_pairs, tmp_path):
    out = tmp_path / "out"
    args = ["--data", pair_cache, "--pairs", small_pairs.view2, "--out", out, "--device", "cpu"]
    result = facetool_cli("eval", checkpoint, *args, "--fold", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    model, _ = load_embedding_model(checkpoint)
    with open_cache(pair_cache) as cache:
        expected = evaluate_on_pairs(model, cache, small_pairs.view2)
    assert report["protocol"] == "fold 2 of 2" and report["num_pairs"] == 6 and report["folds"] == [2]
    assert report["fold_accuracy"] == pytest.approx(expected.fold_accuracy[1:])
    result = facetool_cli("eval", checkpoint, *args, "--fold", "0")
    assert result.returncode == 2 and "fold" in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.slow
def test_eval_facenet_weights_on_an_image_folder(facetool_cli, lfw_dir, small_pairs, tmp_path):
    """A facenet-pytorch state dict on the LFW folder: only the pairs' images are detected, then evaluated."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(1)
    weights = tmp_path / "facenet.pt"
    torch.save(InceptionResnetV1().state_dict(), weights)
    lines = small_pairs.view2.read_text().splitlines()
    pairs = tmp_path / "tiny.txt"
    pairs.write_text("\n".join(["2\t1", lines[1], lines[4], lines[7], lines[10]]) + "\n")
    out = tmp_path / "out"
    result = facetool_cli("eval", weights, "--data", lfw_dir, "--pairs", pairs, "--out", out, "--flip")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["num_pairs"] == 4 and report["flip"] is True and len(report["fold_accuracy"]) == 2
    with open_cache(out / "pairs-faces.h5") as cache:
        assert len(cache) == report["num_images"] and cache.image_size == 160


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--pairs", "BAD"], 1, r"bad.txt:3: expected 3 fields `name i j` for a matched pair, got 2"),
        ([], 2, "no data given: pass --data"),
        (["--pairs", "BAD", "--distance", "manhattan"], 2, "command line: distance: Input should be"),
    ],
)
def test_eval_errors_are_one_line(facetool_cli, tmp_path, args, code, message):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\t2\nA\t1\t2\nB\t1\nC\t1\tD\t1\nE\t1\tF\t1\n")
    args = [str(bad) if a == "BAD" else a for a in args]
    data = [] if not args else ["--data", str(tmp_path)]
    result = facetool_cli("eval", tmp_path / "model.pth", *data, *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
