"""Scoring insightface verification packs (`lfw.bin`, `cfp_fp.bin`, ...) as insightface scores them.

Pair i is images 2i and 2i+1; each image is embedded with its mirror image (the flip sum, then normalised);
the distance is the squared L2 distance of the unit embeddings; accuracy is cross-validated over 10 contiguous
folds (sklearn's `KFold(10)` without shuffling) with thresholds 0, 0.01, .. 3.99, the threshold chosen on the
other nine folds. These are `facetool.evaluation.metrics`' LFW rules, so a pack made by `dataset export --pack`
from pairs.txt scores as `eval` scores the cache. VAL@FAR, AUC and EER come from the same metrics.
The images are decoded and embedded a batch at a time; only the embeddings are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from facetool.errors import FacetoolError
from facetool.evaluation.metrics import evaluate_folds, get_distance, kfold_ids, stratified_fold_ids
from facetool.evaluation.pairs import PairsFile
from facetool.evaluation.run import EvalReport, Progress
from facetool.formats.packs import read_pack

PACK_FOLDS = 10
PACK_PROTOCOL = "10 contiguous folds (insightface)"
_DECODE_BATCH = 512


def _decode(images: Sequence[bytes], start: int, where: Path) -> np.ndarray:
    faces = []
    for i, data in enumerate(images):
        face = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        if face is None:
            raise FacetoolError(f"{where}: image {start + i} is not a decodable image")
        if faces and face.shape != faces[0].shape:
            raise FacetoolError(
                f"{where}: image {start + i} is {face.shape[1]}x{face.shape[0]}, others differ"
            )
        faces.append(face)
    return np.stack(faces)


def pack_pairs(pairs: PairsFile) -> list[tuple[str, str, bool]]:
    """The pairs of `pairs` in the order a pack written from them keeps, so that insightface's 10 contiguous
    folds are the folds `facetool eval` scores the file with: its own folds in turn, or, for a file without
    folds (View 1's pairsDevTest.txt lists all 500 matched pairs first), the stratified blocks `eval` uses (the
    k-th tenth of the matched pairs, then of the mismatched ones). In file order, a View 1 file's contiguous
    folds would each hold pairs of one kind. (The two agree exactly when the folds are of equal size, as in
    LFW's files.)"""
    ids = pairs.fold_ids
    if ids is None:
        try:
            ids = stratified_fold_ids(pairs.issame, PACK_FOLDS)
        except ValueError:
            ids = np.zeros(len(pairs), np.int64)
    return [(p.path1, p.path2, p.issame) for p in (pairs.pairs[i] for i in np.argsort(ids, kind="stable"))]


def evaluate_pack(
    embed: Callable[[np.ndarray], np.ndarray],
    pack_path: str | Path,
    *,
    distance: str = "euclidean",
    flip: bool = True,
    progress: Progress | None = None,
) -> EvalReport:
    """Score a verification pack with `embed` (faces -> unit embeddings; the flip sum is the embedder's)."""
    pack_path = Path(pack_path)
    get_distance(distance)
    pack = read_pack(pack_path)
    n = len(pack)
    if n < PACK_FOLDS:
        raise FacetoolError(f"{pack_path}: {n} pairs cannot be split into {PACK_FOLDS} folds")
    parts = []
    for start in range(0, len(pack.images), _DECODE_BATCH):
        faces = _decode(pack.images[start : start + _DECODE_BATCH], start, pack_path)
        parts.append(embed(faces))
        if progress is not None:
            progress(min(start + _DECODE_BATCH, len(pack.images)), len(pack.images))
    emb = np.concatenate(parts)
    distances = get_distance(distance).function(emb[0::2], emb[1::2])
    metrics = evaluate_folds(distances, pack.issame, kfold_ids(n, PACK_FOLDS), distance=distance)
    return EvalReport.from_metrics(
        metrics,
        pairs_file=str(pack_path),
        train_pairs_file=None,
        protocol=PACK_PROTOCOL,
        folds=list(range(1, PACK_FOLDS + 1)),
        num_pairs=n,
        num_images=len(pack.images),
        flip=flip,
    )
