"""evaluate_on_pairs on real LFW faces and a real network, against an independent computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.errors import FacetoolError, PairsError, UsageError
from facetool.evaluation.data import default_pairs, faces_for_pairs, pairs_candidates
from facetool.evaluation.metrics import PairSplit, evaluate_folds, evaluate_splits, stratified_fold_ids
from facetool.evaluation.pairs import read_pairs
from facetool.evaluation.report import render_report, write_report
from facetool.evaluation.run import evaluate_on_pairs


def expected_distances(pairs_path, embeddings, distance="euclidean"):
    pairs = read_pairs(pairs_path)
    a = np.stack([embeddings[p.path1] for p in pairs.pairs]).astype(np.float64)
    b = np.stack([embeddings[p.path2] for p in pairs.pairs]).astype(np.float64)
    if distance == "cosine":
        return 1 - np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), pairs.issame
    return np.sum((a - b) ** 2, axis=1), pairs.issame


def test_view2_folds_match_independent_embeddings(model, pair_cache, small_pairs, reference_embeddings):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2)
    dist, issame = expected_distances(small_pairs.view2, reference_embeddings)
    assert dist.std() > 0.05, "embeddings of different faces should differ"
    expected = evaluate_folds(dist, issame, np.repeat([0, 1], 6))
    assert report.protocol == "2-fold" and report.num_pairs == 12
    assert report.num_images == len(read_pairs(small_pairs.view2).images)
    np.testing.assert_allclose(report.fold_accuracy, expected.fold_accuracy)
    np.testing.assert_allclose(report.fold_threshold, expected.fold_threshold)
    np.testing.assert_allclose(report.fold_val, expected.fold_val)
    assert report.accuracy == pytest.approx(expected.accuracy_mean)
    assert report.accuracy_std == pytest.approx(expected.accuracy_std)
    assert report.auc == pytest.approx(expected.auc) and report.eer == pytest.approx(expected.eer)
    np.testing.assert_allclose(report.roc_tpr, expected.tpr)


def test_batch_size_does_not_change_the_result(model, pair_cache, small_pairs):
    with open_cache(pair_cache) as cache:
        small = evaluate_on_pairs(model, cache, small_pairs.view2, batch_size=11)
        large = evaluate_on_pairs(model, cache, small_pairs.view2, batch_size=256)
    np.testing.assert_allclose(small.roc_tpr, large.roc_tpr)
    assert small.accuracy == large.accuracy and small.auc == pytest.approx(large.auc)


def test_flip_sums_mirrored_embeddings_and_renormalises(model, pair_cache, small_pairs):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2, flip=True, distance="cosine")
        faces = dict(zip(cache.paths, cache.read_faces(), strict=True))
    images = read_pairs(small_pairs.view2).images
    both = np.concatenate(
        [np.stack([faces[p] for p in images]), np.stack([faces[p][:, ::-1] for p in images])]
    )
    with torch.no_grad():
        out = model((torch.from_numpy(both).permute(0, 3, 1, 2).float() - 127.5) / 128.0).numpy()
    total = out[: len(images)] + out[len(images) :]
    flipped = dict(zip(images, total / np.linalg.norm(total, axis=1, keepdims=True), strict=True))
    dist, issame = expected_distances(small_pairs.view2, flipped, "cosine")
    expected = evaluate_folds(dist, issame, np.repeat([0, 1], 6), distance="cosine")
    assert report.flip and report.distance == "cosine"
    np.testing.assert_allclose(report.roc_fpr, expected.fpr)
    np.testing.assert_allclose(report.roc_tpr, expected.tpr)
    np.testing.assert_allclose(report.fold_accuracy, expected.fold_accuracy)


def test_view1_thresholds_from_train_pairs(model, pair_cache, small_pairs, reference_embeddings):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.dev_test, train_pairs_path=small_pairs.dev_train)
    train_d, train_s = expected_distances(small_pairs.dev_train, reference_embeddings)
    test_d, test_s = expected_distances(small_pairs.dev_test, reference_embeddings)
    is_test = np.r_[np.zeros(train_d.size, bool), np.ones(test_d.size, bool)]
    expected = evaluate_splits(np.r_[train_d, test_d], np.r_[train_s, test_s], [PairSplit(~is_test, is_test)])
    assert report.protocol == "train/test" and report.num_pairs == 20
    assert len(report.fold_accuracy) == 1 and report.accuracy_std == 0.0
    assert report.accuracy == pytest.approx(expected.accuracy_mean)
    assert report.fold_threshold == pytest.approx(expected.fold_threshold.tolist())
    assert report.train_pairs_file == str(small_pairs.dev_train)


def test_file_without_folds_uses_ten_stratified_folds(model, pair_cache, small_pairs, reference_embeddings):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.dev_test)
    dist, issame = expected_distances(small_pairs.dev_test, reference_embeddings)
    expected = evaluate_folds(dist, issame, stratified_fold_ids(issame, 10))
    assert report.protocol == "10-fold (stratified blocks)" and len(report.fold_accuracy) == 10
    np.testing.assert_allclose(report.fold_accuracy, expected.fold_accuracy)


def test_one_fold_takes_its_thresholds_from_the_other_folds(
    model, pair_cache, small_pairs, reference_embeddings
):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2, fold=2)
        both = evaluate_on_pairs(model, cache, small_pairs.view2)
    dist, issame = expected_distances(small_pairs.view2, reference_embeddings)
    second = np.repeat([False, True], 6)
    expected = evaluate_splits(dist, issame, [PairSplit(train=~second, test=second)])
    assert report.protocol == "fold 2 of 2" and report.num_pairs == 6 and report.folds == [2]
    assert both.folds == [1, 2]
    np.testing.assert_allclose(report.fold_accuracy, expected.fold_accuracy)
    np.testing.assert_allclose(report.fold_threshold, expected.fold_threshold)
    assert report.fold_accuracy == pytest.approx(both.fold_accuracy[1:])
    with open_cache(pair_cache) as cache:
        for kwargs, message in [
            ({"pairs_path": small_pairs.view2, "fold": 3}, "fold 3 asked for, but the file has folds 1 to 2"),
            ({"pairs_path": small_pairs.dev_test, "fold": 1}, "has no folds"),
        ]:
            with pytest.raises(UsageError, match=message):
                evaluate_on_pairs(model, cache, **kwargs)


def test_one_fold_with_thresholds_from_training_pairs(model, pair_cache, small_pairs, reference_embeddings):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(
            model, cache, small_pairs.view2, fold=2, train_pairs_path=small_pairs.dev_train
        )
    train_d, train_s = expected_distances(small_pairs.dev_train, reference_embeddings)
    test_d, test_s = expected_distances(small_pairs.view2, reference_embeddings)
    second = np.repeat([False, True], 6)
    expected = evaluate_splits(
        np.r_[train_d, test_d[second]],
        np.r_[train_s, test_s[second]],
        [
            PairSplit(
                train=np.r_[np.ones(train_d.size, bool), np.zeros(6, bool)],
                test=np.r_[np.zeros(train_d.size, bool), np.ones(6, bool)],
            )
        ],
    )
    other_folds = evaluate_splits(test_d, test_s, [PairSplit(train=~second, test=second)])
    assert report.protocol == "fold 2 of 2, thresholds from training" and report.num_pairs == 6
    assert report.folds == [2] and report.train_pairs_file == str(small_pairs.dev_train)
    assert report.fold_threshold == pytest.approx(expected.fold_threshold.tolist())
    assert report.fold_accuracy == pytest.approx(expected.fold_accuracy.tolist())
    assert report.fold_threshold != pytest.approx(other_folds.fold_threshold.tolist()), (
        "the training pairs must choose another threshold than the other folds, or this test proves nothing"
    )


def test_too_few_pairs_or_folds_to_cross_validate(model, pair_cache, small_pairs, tmp_path):
    with open_cache(pair_cache) as cache, pytest.raises(PairsError, match="4 matched pairs cannot be split"):
        evaluate_on_pairs(model, cache, small_pairs.dev_train)
    one_fold = tmp_path / "one.txt"
    one_fold.write_text("1\t1\nAaron_Peirsol\t1\t2\nAJ_Cook\t1\tMarsha_Thomason\t1\n")
    with (
        open_cache(pair_cache) as cache,
        pytest.raises(PairsError, match="one fold cannot be cross-validated"),
    ):
        evaluate_on_pairs(model, cache, one_fold)


def test_missing_image_stops_with_its_name(model, pair_cache, tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "2\t1\nAaron_Peirsol\t1\t2\nAJ_Cook\t1\tMarsha_Thomason\t1\n"
        "Aaron_Peirsol\t1\t2\nNobody_Here\t1\tAaron_Peirsol\t1\n"
    )
    with open_cache(pair_cache) as cache, pytest.raises(PairsError) as caught:
        evaluate_on_pairs(model, cache, pairs)
    message = str(caught.value)
    assert "Nobody_Here/Nobody_Here_0001.jpg" in message and str(pair_cache) in message


def test_model_mode_is_restored(model, pair_cache, small_pairs):
    model.train()
    try:
        with open_cache(pair_cache) as cache:
            evaluate_on_pairs(model, cache, small_pairs.view2)
        assert model.training
    finally:
        model.eval()


def test_progress_reports_every_batch(model, pair_cache, small_pairs):
    calls = []
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(
            model, cache, small_pairs.view2, batch_size=8, progress=lambda d, t: calls.append((d, t))
        )
    n = report.num_images
    assert calls[-1] == (n, n) and [d for d, _ in calls] == sorted({*range(8, n, 8), n})


def test_report_files_and_table(model, pair_cache, small_pairs, tmp_path):
    from rich.console import Console

    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2)
    json_path, roc_path = write_report(report, tmp_path / "out")
    with pytest.raises(FacetoolError, match=r"report\.json: cannot create the output folder"):
        write_report(report, json_path)
    data = json.loads(json_path.read_text())
    assert data["accuracy"] == report.accuracy and data["fold_accuracy"] == report.fold_accuracy
    assert data["roc_tpr"] == report.roc_tpr.tolist() and data["distance"] == "euclidean"
    assert json.loads(report.to_json()) == data
    assert roc_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and roc_path.stat().st_size > 5000
    console = Console(record=True, width=160)
    render_report(report, console)
    text = console.export_text()
    assert "mean" in text and f"{report.accuracy:.4f} ± {report.accuracy_std:.4f}" in text
    assert text.count("\n│    ") >= 2


def test_default_pairs_search(tmp_path, pair_cache, shared, lfw_dir):
    folder = tmp_path / "faces"
    folder.mkdir()
    with pytest.raises(UsageError, match=r"no --pairs given and no pairs\.txt found in"):
        default_pairs(folder)
    (tmp_path / "pairs.txt").write_text("x")
    assert default_pairs(folder) == tmp_path / "pairs.txt"
    (folder / "pairs.txt").write_text("x")
    assert default_pairs(folder) == folder / "pairs.txt"
    assert default_pairs(lfw_dir) == shared / "lfw" / "pairs.txt"
    # a cache: beside it first, then by the image folder recorded in its metadata
    assert pairs_candidates(pair_cache)[1:] == [lfw_dir / "pairs.txt", shared / "lfw" / "pairs.txt"]
    assert default_pairs(pair_cache) == shared / "lfw" / "pairs.txt"


def test_folder_data_detects_only_the_pairs_images(small_pairs, lfw_dir, tmp_path):
    pairs = [read_pairs(small_pairs.view2)]
    cache_path = faces_for_pairs(lfw_dir, pairs, tmp_path, DetectConfig(workers=1))
    with open_cache(cache_path) as cache:
        assert sorted(cache.paths) == pairs[0].images
        assert cache.detected.sum() >= len(cache) - 2
    assert faces_for_pairs(cache_path, pairs, tmp_path, DetectConfig()) == cache_path


def test_folder_missing_pair_image_stops_before_detection(lfw_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\nAaron_Peirsol\t1\t99\nAaron_Peirsol\t1\tNobody\t1\n")
    with pytest.raises(
        PairsError, match=r"2 image\(s\) missing from .*Aaron_Peirsol_0099.jpg, Nobody/Nobody_0001.jpg"
    ):
        faces_for_pairs(lfw_dir, [read_pairs(bad)], tmp_path, DetectConfig())
    assert not (tmp_path / "pairs-faces.h5").exists()
