"""LFW metrics against independent computations: a brute-force reference loop and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold

from facetool.evaluation.metrics import (
    PairSplit,
    equal_error_rate,
    evaluate_folds,
    evaluate_splits,
    get_distance,
    kfold_ids,
    pair_distances,
    stratified_fold_ids,
    val_threshold,
    verification_accuracy,
)

FOLD = np.r_[np.ones(30, bool), np.zeros(30, bool)]


def synthetic(seed: int, n_folds: int = 10, quantum: float | None = 0.01):
    """Pairs laid out like pairs.txt (per fold 30 matched then 30 mismatched), distances in [0, 4).

    With `quantum` the distances are multiples of it, so many equal one another and sit exactly on grid
    thresholds: ties in accuracy and long runs of repeated FAR values.
    """
    rng = np.random.default_rng(seed)
    issame = np.tile(FOLD, n_folds)
    d = np.where(issame, rng.normal(1.0, 0.35, issame.size), rng.normal(1.7, 0.35, issame.size))
    if quantum:
        d = np.round(d / quantum) * quantum
    return np.clip(d, 0.0, 3.98), issame, np.repeat(np.arange(n_folds), FOLD.size)


def reference_rates(threshold, dist, issame):
    """The classic facenet `calculate_accuracy`, line for line."""
    predict = np.less(dist, threshold)
    tp = np.sum(predict & issame)
    fp = np.sum(predict & ~issame)
    tn = np.sum(~predict & ~issame)
    fn = np.sum(~predict & issame)
    tpr = 0 if tp + fn == 0 else tp / (tp + fn)
    fpr = 0 if fp + tn == 0 else fp / (fp + tn)
    return tpr, fpr, (tp + tn) / dist.size


def reference_roc(dist, issame, folds, thresholds):
    """Brute-force classic `calculate_roc`: per fold, best training threshold by a loop, first on ties."""
    accs, best_thresholds, tprs, fprs = [], [], [], []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        acc_train = [reference_rates(t, dist[train], issame[train])[2] for t in thresholds]
        best = thresholds[int(np.argmax(acc_train))]
        rates = np.array([reference_rates(t, dist[test], issame[test])[:2] for t in thresholds])
        tprs.append(rates[:, 0])
        fprs.append(rates[:, 1])
        accs.append(reference_rates(best, dist[test], issame[test])[2])
        best_thresholds.append(best)
    return np.array(accs), np.array(best_thresholds), np.mean(tprs, 0), np.mean(fprs, 0)


def classic_val_threshold(far_train, thresholds, target=1e-3):
    """The classic facenet `calculate_val` threshold: SciPy's interp1d over the raw FAR curve, repeats kept.

    (Current SciPy refuses repeated x for the classic `slinear` kind; its `linear` kind takes them and, like
    the old `slinear`, interpolates from the last point whose FAR is at most the target to the next one.)
    """
    if far_train.max() < target:
        return 0.0
    return float(interp1d(far_train, thresholds, kind="linear")(target))


def reference_val(dist, issame, folds, thresholds, target=1e-3):
    """Classic `calculate_val`, fold by fold, with `classic_val_threshold`."""
    vals, fars = [], []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        diff_train = np.sort(dist[train & ~issame])
        far_train = np.searchsorted(diff_train, thresholds, side="left") / diff_train.size
        threshold = classic_val_threshold(far_train, thresholds, target)
        predict = dist[test] < threshold
        vals.append(np.sum(predict & issame[test]) / np.sum(issame[test]))
        fars.append(np.sum(predict & ~issame[test]) / np.sum(~issame[test]))
    return np.array(vals), np.array(fars)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantum", [0.01, 0.005, None])
def test_accuracy_and_roc_match_brute_force(seed, quantum):
    dist, issame, folds = synthetic(seed, quantum=quantum)
    result = evaluate_folds(dist, issame, folds)
    thresholds = np.arange(0, 4, 0.01)
    accs, best, tpr, fpr = reference_roc(dist, issame, folds, thresholds)
    np.testing.assert_allclose(result.fold_accuracy, accs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.fold_threshold, best)
    np.testing.assert_allclose(result.tpr, tpr, atol=1e-12)
    np.testing.assert_allclose(result.fpr, fpr, atol=1e-12)
    assert result.accuracy_mean == pytest.approx(np.mean(accs))
    assert result.accuracy_std == pytest.approx(np.std(accs, ddof=0))
    assert result.accuracy_std != pytest.approx(np.std(accs, ddof=1))


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("quantum", [0.01, 0.002])
def test_val_matches_scipy_on_repeated_far(seed, quantum):
    dist, issame, folds = synthetic(seed, quantum=quantum)
    # many mismatched pairs share a distance (off the grid): FAR repeats over long runs of thresholds
    dist = dist + quantum / 3
    result = evaluate_folds(dist, issame, folds)
    vals, fars = reference_val(dist, issame, folds, np.arange(0, 4, 0.001))
    np.testing.assert_allclose(result.fold_val, vals, atol=1e-12)
    np.testing.assert_allclose(result.fold_far, fars, atol=1e-12)
    assert result.val_std == pytest.approx(np.std(vals))
    assert result.far_mean == pytest.approx(np.mean(fars))


def lfw_like(seed: int, quantum: float | None):
    """6,000 pairs laid out like pairs.txt; with `quantum`, distances are multiples of it (many ties),
    shifted off the threshold grid."""
    rng = np.random.default_rng(seed)
    issame = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    gap = rng.uniform(0.2, 1.5)
    d = np.where(issame, rng.normal(1.0, 0.3, issame.size), rng.normal(1.0 + gap, 0.3, issame.size))
    if quantum:
        d = np.round(d / quantum) * quantum + 0.0003
    return np.clip(d, 1e-4, 3.999), issame, np.repeat(np.arange(10), 600)


@pytest.mark.parametrize("seed", range(40))
def test_val_agrees_with_the_classic_code_on_lfw_sized_cases(seed):
    dist, issame, folds = lfw_like(seed, None if seed % 2 else 0.01)
    result = evaluate_folds(dist, issame, folds)
    vals, fars = reference_val(dist, issame, folds, np.arange(0, 4, 0.001))
    np.testing.assert_allclose(result.fold_val, vals, atol=1e-12)
    np.testing.assert_allclose(result.fold_far, fars, atol=1e-12)


def test_perfect_separation_on_small_data_gives_val_one():
    # 30 mismatched pairs per fold: FAR jumps from 0 straight to 1/270 > 1e-3
    issame = np.tile(FOLD, 10)
    rng = np.random.default_rng(5)
    dist = np.where(issame, rng.uniform(0.2, 0.8, issame.size), rng.uniform(1.6, 2.4, issame.size))
    result = evaluate_folds(dist, issame, np.repeat(np.arange(10), 60))
    assert result.val_mean == 1.0
    vals, _ = reference_val(dist, issame, np.repeat(np.arange(10), 60), np.arange(0, 4, 0.001))
    np.testing.assert_array_equal(result.fold_val, vals)


def test_collapsed_network_does_not_report_val_one():
    issame = np.tile(FOLD, 10)
    result = evaluate_folds(np.zeros(issame.size), issame, np.repeat(np.arange(10), 60))
    assert result.val_mean == 0.0 and result.far_mean == 0.0
    assert result.accuracy_mean == 0.5


def test_mismatched_pairs_on_the_grid_keep_the_grid_threshold():
    # 3 of 300 mismatched training pairs at exactly 0.5 (a grid value): any threshold above 0.5 has FAR 0.01
    issame = np.r_[np.ones(100, bool), np.zeros(300, bool)]
    dist = np.where(issame, 0.3, 2.0)
    dist[100:103] = np.arange(0, 4, 0.001)[500]
    everything = np.ones(issame.size, bool)
    result = evaluate_splits(dist, issame, [PairSplit(train=everything, test=everything)])
    assert result.fold_val_threshold[0] == np.arange(0, 4, 0.001)[500]
    assert result.fold_far[0] == 0.0 and result.fold_val[0] == 1.0


def test_ties_pick_the_smallest_threshold():
    issame = np.tile(FOLD, 10)
    dist = np.where(issame, 0.5, 1.5)
    result = evaluate_folds(dist, issame, np.repeat(np.arange(10), 60))
    # every threshold in (0.5, 1.5] separates perfectly; the first grid value above 0.5 wins
    np.testing.assert_allclose(result.fold_threshold, 0.51)
    assert result.accuracy_mean == 1.0 and result.accuracy_std == 0.0


def test_threshold_is_strict():
    issame = np.tile(FOLD, 10)
    dist = np.where(issame, 1.0, 1.2)
    result = evaluate_folds(dist, issame, np.repeat(np.arange(10), 60))
    # distance 1.0 is "same" only for thresholds strictly above it
    assert result.fold_threshold.min() > 1.0


def test_auc_and_eer_match_scikit_learn_on_one_split():
    # distances half-way between grid thresholds: the grid ROC holds every point of the exact ROC
    rng = np.random.default_rng(7)
    issame = rng.random(500) < 0.5
    dist = np.where(issame, rng.normal(1.0, 0.5, 500), rng.normal(1.6, 0.5, 500))
    dist = np.clip(np.floor(dist * 100) / 100 + 0.005, 0.005, 3.985)
    everything = np.ones(500, bool)
    result = evaluate_splits(dist, issame, [PairSplit(train=everything, test=everything)])
    fpr, tpr, _ = roc_curve(issame, -dist)
    assert result.auc == pytest.approx(sk_auc(fpr, tpr), abs=1e-12)
    assert result.auc == pytest.approx(roc_auc_score(issame, -dist), abs=1e-12)
    eer = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-12)
    assert result.eer == pytest.approx(eer, abs=1e-9)


def test_averaged_roc_auc_is_the_area_of_that_roc():
    dist, issame, folds = synthetic(4)
    result = evaluate_folds(dist, issame, folds)
    closed_fpr = np.r_[0.0, result.fpr, 1.0]
    closed_tpr = np.r_[0.0, result.tpr, 1.0]
    assert result.auc == pytest.approx(sk_auc(closed_fpr, closed_tpr), abs=1e-12)
    assert 0.5 < result.auc < 1.0
    eer = brentq(lambda x: 1.0 - x - np.interp(x, closed_fpr, closed_tpr), 0.0, 1.0, xtol=1e-12)
    assert result.eer == pytest.approx(eer, abs=1e-9)


def test_eer_on_vertical_and_diagonal_segments():
    # vertical segment at FPR 0.2 crossing TPR = 0.8
    assert equal_error_rate(np.array([0.0, 0.2, 0.2, 1.0]), np.array([0.0, 0.5, 0.9, 1.0])) == pytest.approx(
        0.2
    )
    # chance diagonal: EER 0.5
    assert equal_error_rate(np.linspace(0, 1, 11), np.linspace(0, 1, 11)) == pytest.approx(0.5)
    # perfect separation: EER 0
    assert equal_error_rate(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])) == 0.0


class TestValThreshold:
    thresholds = np.array([0.0, 1.0, 2.0, 3.0, 4.0])

    def test_interpolates_from_the_last_threshold_of_a_repeated_far(self):
        far = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
        # between (0, threshold 1) and (0.5, threshold 2): FAR 0.25 lies half-way
        assert val_threshold(far, self.thresholds, 0.25) == pytest.approx(1.5)
        assert val_threshold(far, self.thresholds, 0.25) == pytest.approx(
            classic_val_threshold(far, self.thresholds, 0.25)
        )

    def test_target_on_a_repeated_value_takes_its_last_threshold(self):
        far = np.array([0.0, 0.5, 0.5, 0.5, 1.0])
        assert val_threshold(far, self.thresholds, 0.5) == pytest.approx(3.0)

    def test_max_far_below_target_gives_zero(self):
        far = np.array([0.0, 0.0, 0.0, 0.0005, 0.0009])
        assert val_threshold(far, self.thresholds, 1e-3) == 0.0

    def test_max_far_equal_to_target_interpolates(self):
        far = np.array([0.0, 0.0, 0.0, 0.0005, 0.001])
        assert val_threshold(far, self.thresholds, 1e-3) == pytest.approx(4.0)

    def test_target_below_smallest_far_clamps_to_the_first_threshold(self):
        far = np.array([0.01, 0.01, 0.5, 0.5, 1.0])
        assert val_threshold(far, self.thresholds, 1e-3) == 0.0

    def test_constant_far_does_not_crash(self):
        assert val_threshold(np.full(5, 0.3), self.thresholds, 1e-3) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=40, max_size=40),
    st.lists(st.integers(0, 40), min_size=40, max_size=40),
    st.integers(10, 600).map(lambda k: k / 1000),
)
def test_val_threshold_stays_below_the_first_grid_threshold_over_target(same_q, diff_q, target):
    dist = np.r_[same_q, diff_q] * 0.05
    issame = np.r_[np.ones(40, bool), np.zeros(40, bool)]
    thresholds = np.arange(0, 4, 0.01)
    far = np.array([np.mean(dist[~issame] < t) for t in thresholds])
    threshold = val_threshold(far, thresholds, target)
    over = far > target
    if far.max() < target:
        assert threshold == 0.0
    elif over.any():
        assert threshold < thresholds[np.argmax(over)]
    assert far[thresholds <= threshold].max() <= target


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.05, 0.01, 0.001]))
def test_property_matches_brute_force(seed, quantum):
    dist, issame, folds = synthetic(seed, n_folds=3, quantum=quantum)
    result = evaluate_folds(dist, issame, folds)
    accs, best, _, _ = reference_roc(dist, issame, folds, np.arange(0, 4, 0.01))
    np.testing.assert_allclose(result.fold_accuracy, accs, atol=1e-12)
    np.testing.assert_array_equal(result.fold_threshold, best)


def test_cosine_distance_sweeps_the_same_decisions_as_euclidean():
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(200, 64))
    a = centres + 0.6 * rng.normal(size=centres.shape)
    same = np.tile(np.r_[np.ones(10, bool), np.zeros(10, bool)], 10)
    partner = np.where(same, np.arange(200), np.roll(np.arange(200), 7))
    b = centres[partner] + 0.6 * rng.normal(size=centres.shape)
    euc, cos = pair_distances(a, b, "euclidean"), pair_distances(a, b, "cosine")
    np.testing.assert_allclose(euc, 2 * cos, atol=1e-12)
    assert euc.min() >= 0 and euc.max() <= 4 and cos.max() <= 2
    folds = np.repeat(np.arange(10), 20)
    r_euc = evaluate_folds(euc, same, folds, distance="euclidean")
    r_cos = evaluate_folds(cos, same, folds, distance="cosine")
    np.testing.assert_allclose(r_cos.fold_accuracy, r_euc.fold_accuracy)
    np.testing.assert_allclose(r_cos.fold_threshold, r_euc.fold_threshold / 2)
    np.testing.assert_allclose(r_cos.fold_val, r_euc.fold_val)
    assert r_cos.auc == pytest.approx(r_euc.auc) and r_cos.eer == pytest.approx(r_euc.eer)
    assert get_distance("cosine").accuracy_thresholds()[-1] == pytest.approx(1.995)


def test_distances_of_known_vectors():
    a = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 0.0], [-1.0, 0.0], [5.0, 0.0]])
    np.testing.assert_allclose(pair_distances(a, b), [0.0, 4.0, 2.0])
    np.testing.assert_allclose(pair_distances(a, b, "cosine"), [0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="unknown distance 'manhattan'"):
        pair_distances(a, b, "manhattan")


@pytest.mark.parametrize("n", [6000, 1003, 25])
def test_kfold_ids_match_sklearn_kfold(n):
    ids = kfold_ids(n, 10)
    for k, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(np.arange(n))):
        np.testing.assert_array_equal(np.flatnonzero(ids == k), test)


def test_stratified_folds_hold_both_kinds():
    issame = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    ids = stratified_fold_ids(issame)
    for k in range(10):
        assert issame[ids == k].sum() == 50 and (~issame[ids == k]).sum() == 50
    np.testing.assert_array_equal(ids[:50], 0)
    np.testing.assert_array_equal(ids[500:550], 0)


def test_verification_accuracy_contract():
    dist, issame, _ = synthetic(5)
    mean, std = verification_accuracy(dist, issame, n_folds=10)
    accs, *_ = reference_roc(dist, issame, kfold_ids(len(dist), 10), np.arange(0, 4, 0.01))
    assert (mean, std) == (pytest.approx(np.mean(accs)), pytest.approx(np.std(accs)))
    assert isinstance(mean, float) and isinstance(std, float)


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        evaluate_folds(np.zeros(10), np.zeros(9, bool), np.zeros(10))
    with pytest.raises(ValueError, match="cannot split 5 pairs into 10 folds"):
        verification_accuracy(np.zeros(5), np.zeros(5, bool))
