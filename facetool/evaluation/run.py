"""The core of evaluation: a model, a face cache and pairs files in, an EvalReport out (no files written).

Used by `facetool eval` (through `facetool.evaluation.pipeline`, which handles the files), by training's
validation and by the protocol. It embeds the distinct images of the pairs, a batch at a time straight from
the cache, and computes the LFW metrics.

Protocols: a pairs file with folds (pairs.txt) is cross-validated over its own folds; a pairs file without
folds is cross-validated over 10 folds that each take a contiguous block of its matched and of its
mismatched pairs (`metrics.stratified_fold_ids`); with `train_pairs_path` (View 1) the thresholds are chosen
on all the training pairs and all the test pairs are scored once; with `fold` only that fold of a file
with folds is scored, with thresholds from the others (View 2 when each fold has its own model) or, given
both, from the training pairs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facetool.cache import FaceCache
from facetool.data.transforms import embed_faces
from facetool.errors import PairsError, UsageError
from facetool.evaluation.metrics import (
    PairSplit,
    VerificationMetrics,
    evaluate_splits,
    fold_splits,
    get_distance,
    stratified_fold_ids,
)
from facetool.evaluation.pairs import PairsFile, check_images, read_pairs
from facetool.inference import Embedder

DEFAULT_FOLDS = 10
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalReport:
    """The figures of one evaluation. `accuracy` is the mean over folds; stds are population ones.

    `folds` numbers the scored folds (1..n) in the order of the per-fold lists. `held_out` is False when the
    model was trained on `trained_identities_in_pairs` of the scored pairs' people (the figures are then no test
    score), True when on none of them, None when the model does not say whom it was trained on.
    `threshold_identities_trained` counts the trained people among those whose pairs chose the threshold: a
    model's distances within people it was trained on run smaller than within new people (far smaller after a
    class-based loss), so such a threshold can sit too low for the scored people.
    """

    pairs_file: str
    train_pairs_file: str | None
    protocol: str
    folds: list[int]
    num_pairs: int
    num_images: int
    distance: str
    flip: bool
    fold_accuracy: list[float]
    fold_threshold: list[float]
    fold_val: list[float]
    fold_far: list[float]
    accuracy: float
    accuracy_std: float
    val: float
    val_std: float
    far: float
    far_target: float
    auc: float
    eer: float
    roc_thresholds: np.ndarray
    roc_tpr: np.ndarray
    roc_fpr: np.ndarray
    held_out: bool | None = None
    trained_identities_in_pairs: int | None = None
    threshold_identities_trained: int | None = None
    identification: dict[str, Any] | None = None
    clustering: dict[str, Any] | None = None

    @classmethod
    def from_metrics(cls, metrics: VerificationMetrics, **settings: Any) -> EvalReport:
        """Assemble a report from computed metrics and the run's settings (files, protocol, counts)."""
        return cls(
            **settings,
            distance=metrics.distance,
            fold_accuracy=metrics.fold_accuracy.tolist(),
            fold_threshold=metrics.fold_threshold.tolist(),
            fold_val=metrics.fold_val.tolist(),
            fold_far=metrics.fold_far.tolist(),
            accuracy=metrics.accuracy_mean,
            accuracy_std=metrics.accuracy_std,
            val=metrics.val_mean,
            val_std=metrics.val_std,
            far=metrics.far_mean,
            far_target=metrics.far_target,
            auc=metrics.auc,
            eer=metrics.eer,
            roc_thresholds=metrics.thresholds,
            roc_tpr=metrics.tpr,
            roc_fpr=metrics.fpr,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (arrays as lists), as written to report.json."""
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _face_indices(cache: FaceCache, images: list[str], pairs: list[PairsFile]) -> np.ndarray:
    """Cache row of each image; stops with the missing images (and why detection dropped them)."""
    where = {path: i for i, path in enumerate(cache.paths)}
    failed = {f.path: f.reason for f in cache.failures}
    for pairs_file in pairs:
        try:
            check_images(pairs_file, where.keys(), str(cache.path))
        except PairsError as exc:
            reasons = [f"{p}: {failed[p]}" for p in pairs_file.images if p in failed]
            hint = f" (failed in the cache: {'; '.join(reasons[:5])})" if reasons else ""
            raise PairsError(f"{exc}{hint}") from None
    return np.array([where[p] for p in images], dtype=np.int64)


def embed_images(
    embed: Callable[[np.ndarray], np.ndarray],
    cache: FaceCache,
    indices: np.ndarray,
    *,
    batch_size: int,
    progress: Progress | None,
) -> np.ndarray:
    """Embeddings of the cache faces at `indices`, read and embedded `batch_size` at a time."""
    parts = []
    for start in range(0, len(indices), batch_size):
        parts.append(embed(cache.read_faces(indices[start : start + batch_size])))
        if progress is not None:
            progress(min(start + batch_size, len(indices)), len(indices))
    return np.concatenate(parts)


def _pair_distances(pairs: PairsFile, row: dict[str, int], emb: np.ndarray, distance: str) -> np.ndarray:
    first = np.array([row[p.path1] for p in pairs.pairs])
    second = np.array([row[p.path2] for p in pairs.pairs])
    return get_distance(distance).function(emb[first], emb[second])


def _fold_ids(pairs: PairsFile) -> np.ndarray:
    """The file's own folds, or 10 stratified blocks for a file without folds; PairsError if too few."""
    ids = pairs.fold_ids
    if ids is not None:
        if ids.max() < 1:
            raise PairsError(f"{pairs.path}: one fold cannot be cross-validated (give --train-pairs)")
        return ids
    try:
        return stratified_fold_ids(pairs.issame, DEFAULT_FOLDS)
    except ValueError:
        raise PairsError(
            f"{pairs.path}: {pairs.pairs_per_fold} matched pairs cannot be split into {DEFAULT_FOLDS} folds"
        ) from None


def _one_fold(pairs: PairsFile, fold: int, threshold_pairs: PairsFile | None) -> PairSplit:
    """Fold `fold` of `pairs` scored; thresholds from the other folds, or from `threshold_pairs`, which the
    caller puts before `pairs` in the distances."""
    if pairs.n_folds is None or not 1 <= fold <= pairs.n_folds:
        have = "has no folds" if pairs.n_folds is None else f"has folds 1 to {pairs.n_folds}"
        raise UsageError(f"{pairs.path}: fold {fold} asked for, but the file {have}")
    ids = pairs.fold_ids
    if threshold_pairs is None:
        return PairSplit(train=ids != fold - 1, test=ids == fold - 1)
    n = len(threshold_pairs)
    in_fold = np.concatenate([np.zeros(n, dtype=bool), ids == fold - 1])
    return PairSplit(train=np.arange(len(in_fold)) < n, test=in_fold)


def evaluate_on_pairs(
    model: nn.Module | Embedder,
    cache: FaceCache,
    pairs_path: str | Path,
    *,
    train_pairs_path: str | Path | None = None,
    flip: bool = False,
    distance: str = "euclidean",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    image_size: int | None = None,
    fold: int | None = None,
) -> EvalReport:
    """Evaluate `model` on the pairs of `pairs_path` with faces from `cache` (the protocols: module doc).

    `fold` (1..n) scores only that fold of a View 2 file, with thresholds from its other folds: the test of
    a model trained without that fold's people. With `train_pairs_path` as well, the thresholds come from that
    file instead (pairs of people held out of training, say).

    `model` is an Embedder (any runtime; it brings its own flip, batch size, device and input size) or a
    torch module, embedded with `embed_faces` and the arguments here, its train/eval mode kept (training's
    validation passes the model it is training).

    Only the distinct images named by the pairs are embedded; an image missing from the cache stops the
    evaluation with the list of missing images. `progress(done, total)` is called after each batch.
    """
    get_distance(distance)
    test = read_pairs(pairs_path)
    train = read_pairs(train_pairs_path) if train_pairs_path is not None else None
    files = [test] if train is None else [train, test]
    num_pairs = len(test)
    if fold is not None:
        splits = [_one_fold(test, fold, train)]
        protocol = f"fold {fold} of {test.n_folds}" + ("" if train is None else ", thresholds from training")
        num_pairs = int(splits[0].test.sum())
    elif train is None:
        splits = fold_splits(_fold_ids(test))
        protocol = f"{len(splits)}-fold" + ("" if test.n_folds else " (stratified blocks)")
    else:
        is_test = np.arange(len(train) + len(test)) >= len(train)
        splits = [PairSplit(train=~is_test, test=is_test)]
        protocol = "train/test"
    images = sorted(set().union(*(f.images for f in files)))
    indices = _face_indices(cache, images, files)
    if isinstance(model, Embedder):
        embed: Callable[[np.ndarray], np.ndarray] = model
        batch_size, flip = model.batch_size, model.flip
    else:
        embed = functools.partial(
            embed_faces, model, batch_size=batch_size, device=device, flip=flip, image_size=image_size
        )
    emb = embed_images(embed, cache, indices, batch_size=batch_size, progress=progress)
    row = {path: i for i, path in enumerate(images)}
    distances = np.concatenate([_pair_distances(f, row, emb, distance) for f in files])
    issame = np.concatenate([f.issame for f in files])
    metrics = evaluate_splits(distances, issame, splits, distance=distance)
    return EvalReport.from_metrics(
        metrics,
        pairs_file=str(pairs_path),
        train_pairs_file=None if train_pairs_path is None else str(train_pairs_path),
        protocol=protocol,
        folds=[fold] if fold is not None else list(range(1, len(splits) + 1)),
        num_pairs=num_pairs,
        num_images=len(images),
        flip=flip,
    )
