"""The LFW verification metrics, computed exactly as the reference implementations do (pure numpy).

Conventions (see /shared/notes/lfw-protocol.md):

- A pair is called "same" when its distance is strictly below the threshold.
- Distances: ``euclidean`` is the squared Euclidean distance of L2-normalised embeddings, in [0, 4];
  ``cosine`` is 1 - cosine similarity, in [0, 2]. For unit vectors the squared Euclidean distance is
  exactly twice the cosine distance, so the cosine threshold grids are the Euclidean ones halved
  (0..2 in steps of 0.005 for accuracy, 0.0005 for VAL): both distances sweep the same decisions.
- Accuracy: thresholds ``np.arange(0, upper, upper / 400)`` (0..3.99 step 0.01 for Euclidean, as the
  classic code). For each split the threshold with the most correct decisions on the training pairs is
  chosen (the smallest one on ties) and the test pairs are scored with it.
- VAL@FAR: thresholds ``np.arange(0, upper, upper / 4000)``. On the training pairs FAR is computed per
  threshold; when its maximum reaches the target, the threshold is interpolated linearly at FAR = target
  between the LAST grid threshold whose FAR is at most the target and the next one, as the classic code's
  SciPy ``interp1d`` does (FAR is constant over a run of repeated values, so any earlier threshold of the
  run would only lower VAL). A target below the smallest FAR clamps to the smallest threshold. When the
  maximum FAR stays below the target the threshold is 0. One deviation from the classic code: mismatched
  training pairs lying exactly on that last grid threshold are accepted by any threshold above it, so when
  they alone push the training FAR over the target the last grid threshold itself is used. Continuous
  distances never do this; a collapsed network (every distance 0) does, and reports VAL 0 instead of 1.
- ROC: TPR and FPR of each test split per accuracy threshold, averaged over splits. AUC (trapezoids) and
  EER (where FPR = 1 - TPR, linear between grid points) are taken on that curve closed with the points
  (0, 0) and (1, 1), as scikit-learn's ``roc_curve`` closes it; when the grid reaches both ends already
  the added points change nothing.
- Standard deviations are population ones (ddof = 0). Rates with an empty denominator are 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

FAR_TARGET = 1e-3
ACCURACY_STEPS = 400
VAL_STEPS = 4000


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def squared_euclidean(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of the L2-normalised rows, in [0, 4]."""
    return np.sum(np.square(_unit(emb1) - _unit(emb2)), axis=1)


def cosine_distance(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of the rows, in [0, 2]."""
    return 1.0 - np.clip(np.sum(_unit(emb1) * _unit(emb2), axis=1), -1.0, 1.0)


@dataclass(frozen=True)
class Distance:
    """A pair distance and the upper end of its range, which sets its threshold grids."""

    name: str
    function: Callable[[np.ndarray, np.ndarray], np.ndarray]
    upper: float

    def accuracy_thresholds(self) -> np.ndarray:
        return np.arange(0.0, self.upper, self.upper / ACCURACY_STEPS)

    def val_thresholds(self) -> np.ndarray:
        return np.arange(0.0, self.upper, self.upper / VAL_STEPS)


DISTANCES: dict[str, Distance] = {
    "euclidean": Distance("euclidean", squared_euclidean, 4.0),
    "cosine": Distance("cosine", cosine_distance, 2.0),
}


def get_distance(name: str) -> Distance:
    """The distance called `name`; ValueError listing the known ones otherwise."""
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}: expected one of {', '.join(DISTANCES)}") from None


def pair_distances(emb1: np.ndarray, emb2: np.ndarray, distance: str = "euclidean") -> np.ndarray:
    """Distance of each row of `emb1` to the same row of `emb2` (float64)."""
    return get_distance(distance).function(emb1, emb2)


def kfold_ids(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold index of each of `n` items in contiguous blocks, like sklearn's KFold(shuffle=False).

    The first ``n % n_folds`` folds hold one item more than the others.
    """
    if n_folds < 2 or n < n_folds:
        raise ValueError(f"cannot split {n} pairs into {n_folds} folds")
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def stratified_fold_ids(issame: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Fold ids that split the matched and the mismatched pairs each into contiguous blocks.

    Fold k holds the k-th block of matched pairs and the k-th block of mismatched pairs, which is how
    pairs.txt lays out its folds; used for a pairs file without folds (View 1 files list all matched
    pairs first, so plain contiguous blocks would give folds of one kind only).
    """
    issame = np.asarray(issame, dtype=bool)
    ids = np.empty(issame.size, dtype=np.int64)
    for mask in (issame, ~issame):
        ids[mask] = kfold_ids(int(mask.sum()), n_folds)
    return ids


@dataclass(frozen=True)
class PairSplit:
    """Boolean masks of the pairs that choose thresholds (train) and the pairs that are scored (test)."""

    train: np.ndarray
    test: np.ndarray


def fold_splits(fold_ids: np.ndarray) -> list[PairSplit]:
    """One split per fold: that fold is the test set, all the other folds the training set."""
    fold_ids = np.asarray(fold_ids)
    return [PairSplit(train=fold_ids != k, test=fold_ids == k) for k in np.unique(fold_ids)]


@dataclass(frozen=True)
class _Counts:
    """Per-threshold counts of pairs called "same" among the matched (tp) and mismatched (fp) pairs."""

    tp: np.ndarray
    fp: np.ndarray
    n_same: int
    n_diff: int

    @classmethod
    def of(cls, distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> _Counts:
        same = np.sort(distances[issame])
        diff = np.sort(distances[~issame])
        return cls(
            tp=np.searchsorted(same, thresholds, side="left"),
            fp=np.searchsorted(diff, thresholds, side="left"),
            n_same=same.size,
            n_diff=diff.size,
        )

    @property
    def correct(self) -> np.ndarray:
        return self.tp + (self.n_diff - self.fp)

    @property
    def tpr(self) -> np.ndarray:
        return self.tp / self.n_same if self.n_same else np.zeros(self.tp.shape)

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.n_diff if self.n_diff else np.zeros(self.fp.shape)


def _rates_at(threshold: float, distances: np.ndarray, issame: np.ndarray) -> tuple[float, float, float]:
    """(accuracy, TPR, FPR) of the decision distance < threshold."""
    counts = _Counts.of(distances, issame, np.array([threshold]))
    return (
        float(counts.correct[0]) / distances.size,
        float(counts.tpr[0]),
        float(counts.fpr[0]),
    )


def _last_at_most(far: np.ndarray, far_target: float) -> int:
    """Index of the last grid point whose FAR is at most `far_target` (-1 when none); FAR is non-decreasing."""
    return int(np.searchsorted(far, far_target, side="right")) - 1


def val_threshold(far: np.ndarray, thresholds: np.ndarray, far_target: float = FAR_TARGET) -> float:
    """The threshold at which FAR reaches `far_target`, interpolated as the classic code (module docstring)."""
    far = np.asarray(far, dtype=np.float64)
    if far.max() < far_target:
        return 0.0
    lo = _last_at_most(far, far_target)
    if lo < 0:
        return float(thresholds[0])
    if lo == far.size - 1:
        return float(thresholds[lo])
    hi = lo + 1
    slope = (thresholds[hi] - thresholds[lo]) / (far[hi] - far[lo])
    return float(thresholds[lo] + (far_target - far[lo]) * slope)


def _val_threshold_of(
    distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray, far_target: float
) -> float:
    """`val_threshold` of the training pairs, kept at the last grid threshold whose FAR is at most the
    target when mismatched pairs exactly on that threshold would push any threshold above it over the target."""
    far = _Counts.of(distances, issame, thresholds).fpr
    threshold = val_threshold(far, thresholds, far_target)
    lo = _last_at_most(far, far_target)
    if lo < 0 or threshold <= thresholds[lo]:
        return threshold
    just_above = float(np.nextafter(thresholds[lo], np.inf))
    if _rates_at(just_above, distances, issame)[2] > far_target:
        return float(thresholds[lo])
    return threshold


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC (FPR non-decreasing), closed with (0, 0) and (1, 1)."""
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], tpr, [1.0]])
    return float(np.trapezoid(y, x))


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """FPR where FPR = 1 - TPR on the ROC closed with (0, 0) and (1, 1), linear between points."""
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], tpr, [1.0]])
    gap = x + y - 1.0
    k = int(np.argmax(gap >= 0.0))
    if gap[k] == 0.0:
        return float(x[k])
    s = -gap[k - 1] / (gap[k] - gap[k - 1])
    return float(x[k - 1] + s * (x[k] - x[k - 1]))


@dataclass(frozen=True)
class VerificationMetrics:
    """Per-split and summary figures of the verification protocol; arrays are numpy."""

    distance: str
    fold_accuracy: np.ndarray
    fold_threshold: np.ndarray
    fold_val: np.ndarray
    fold_far: np.ndarray
    fold_val_threshold: np.ndarray
    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    far_target: float = FAR_TARGET
    accuracy_mean: float = field(init=False)
    accuracy_std: float = field(init=False)
    val_mean: float = field(init=False)
    val_std: float = field(init=False)
    far_mean: float = field(init=False)
    auc: float = field(init=False)
    eer: float = field(init=False)

    def __post_init__(self) -> None:
        derived = {
            "accuracy_mean": float(np.mean(self.fold_accuracy)),
            "accuracy_std": float(np.std(self.fold_accuracy)),
            "val_mean": float(np.mean(self.fold_val)),
            "val_std": float(np.std(self.fold_val)),
            "far_mean": float(np.mean(self.fold_far)),
            "auc": roc_auc(self.fpr, self.tpr),
            "eer": equal_error_rate(self.fpr, self.tpr),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


def evaluate_splits(
    distances: np.ndarray,
    issame: np.ndarray,
    splits: Sequence[PairSplit],
    *,
    distance: str = "euclidean",
    far_target: float = FAR_TARGET,
) -> VerificationMetrics:
    """Accuracy, VAL@FAR and the averaged ROC of `distances` over the given train/test splits."""
    distances = np.asarray(distances, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if distances.shape != issame.shape or distances.ndim != 1:
        raise ValueError(f"distances {distances.shape} and issame {issame.shape} must be equal 1-D shapes")
    if not splits:
        raise ValueError("no splits to evaluate")
    metric = get_distance(distance)
    acc_thresholds = metric.accuracy_thresholds()
    val_thresholds = metric.val_thresholds()
    rows: dict[str, list[float]] = {k: [] for k in ("acc", "thr", "val", "far", "val_thr")}
    tprs, fprs = [], []
    for split in splits:
        train_d, train_s = distances[split.train], issame[split.train]
        test_d, test_s = distances[split.test], issame[split.test]
        if train_d.size == 0 or test_d.size == 0:
            raise ValueError("every split needs training and test pairs")
        best = acc_thresholds[int(np.argmax(_Counts.of(train_d, train_s, acc_thresholds).correct))]
        test_counts = _Counts.of(test_d, test_s, acc_thresholds)
        tprs.append(test_counts.tpr)
        fprs.append(test_counts.fpr)
        rows["acc"].append(_rates_at(best, test_d, test_s)[0])
        rows["thr"].append(float(best))
        threshold = _val_threshold_of(train_d, train_s, val_thresholds, far_target)
        _, val, far = _rates_at(threshold, test_d, test_s)
        rows["val"].append(val)
        rows["far"].append(far)
        rows["val_thr"].append(threshold)
    return VerificationMetrics(
        distance=metric.name,
        fold_accuracy=np.array(rows["acc"]),
        fold_threshold=np.array(rows["thr"]),
        fold_val=np.array(rows["val"]),
        fold_far=np.array(rows["far"]),
        fold_val_threshold=np.array(rows["val_thr"]),
        thresholds=acc_thresholds,
        tpr=np.mean(tprs, axis=0),
        fpr=np.mean(fprs, axis=0),
        far_target=far_target,
    )


def evaluate_folds(
    distances: np.ndarray,
    issame: np.ndarray,
    fold_ids: np.ndarray,
    *,
    distance: str = "euclidean",
    far_target: float = FAR_TARGET,
) -> VerificationMetrics:
    """Cross-validated metrics: each fold in turn is scored with thresholds chosen on the others."""
    return evaluate_splits(distances, issame, fold_splits(fold_ids), distance=distance, far_target=far_target)


def verification_accuracy(
    distances: np.ndarray, issame: np.ndarray, n_folds: int = 10, *, distance: str = "euclidean"
) -> tuple[float, float]:
    """Mean and population std of the k-fold accuracy (contiguous folds, as the classic code's KFold)."""
    result = evaluate_folds(distances, issame, kfold_ids(len(distances), n_folds), distance=distance)
    return result.accuracy_mean, result.accuracy_std
