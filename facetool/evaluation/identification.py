"""1:N search and the scores of identification and clustering, on L2-normalised embeddings.

`nearest_identities` is the exact search every command uses: each chunk of gallery faces is one matrix product
with the probes (on the CPU or GPU), reduced to each identity's nearest face and merged into a running top-k,
so memory is the probes x chunk distance block however large the gallery is. Distances follow the card's
metric: squared Euclidean (2 - 2 cos, 0..4) or cosine (1 - cos, 0..2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from facetool.cache import FaceCache
from facetool.errors import UsageError
from facetool.identities import normalize_identity

MIN_GALLERY_IMAGES = 2


def to_distance(dot: np.ndarray, metric: str) -> np.ndarray:
    """Distance of unit vectors from their dot product: squared Euclidean (2 - 2 dot) or cosine (1 - dot)."""
    dist = 1.0 - dot if metric == "cosine" else 2.0 - 2.0 * dot
    return np.maximum(dist, 0.0)


def _merge(
    best_d: np.ndarray, best_l: np.ndarray, cand_d: np.ndarray, cand_l: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fold per-identity candidates (P x U, labels `cand_l` of length U, sorted) into the running top-k."""
    pos = np.searchsorted(cand_l, best_l).clip(max=len(cand_l) - 1)
    seen = cand_l[pos] == best_l
    rows = np.nonzero(seen)
    cand_d = cand_d.copy()
    np.minimum.at(cand_d, (rows[0], pos[rows]), best_d[rows])
    best_d = np.where(seen, np.inf, best_d)
    best_l = np.where(seen, -1, best_l)
    all_d = np.concatenate([best_d, cand_d], axis=1)
    all_l = np.concatenate([best_l, np.broadcast_to(cand_l, cand_d.shape)], axis=1)
    take = np.argsort(all_d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_d, take, 1), np.take_along_axis(all_l, take, 1)


def nearest_identities(
    probes: np.ndarray,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    metric: str = "euclidean",
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest identities of each probe and their distances (each identity's nearest face), exact.

    `chunks` yields (embeddings C x D, integer labels C) of the gallery faces. Returns (P x k distances,
    P x k labels), nearest first; where the gallery has fewer than k identities the rest is (inf, -1).
    """
    probes_t = torch.as_tensor(np.ascontiguousarray(probes, np.float32), device=device)
    best_d = np.full((len(probes), k), np.inf, np.float64)
    best_l = np.full((len(probes), k), -1, np.int64)
    for emb, labels in chunks:
        if len(labels) == 0:
            continue
        dot = probes_t @ torch.as_tensor(np.ascontiguousarray(emb, np.float32), device=device).T
        dist = to_distance(dot.double().cpu().numpy(), metric)
        order = np.argsort(labels, kind="stable")
        ids, starts = np.unique(labels[order], return_index=True)
        per_id = np.minimum.reduceat(dist[:, order], starts, axis=1)
        best_d, best_l = _merge(best_d, best_l, per_id, ids.astype(np.int64), k)
    return best_d, best_l


def in_chunks(
    embeddings: np.ndarray, labels: np.ndarray, size: int
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(embeddings, labels) of an in-memory gallery, `size` faces at a time."""
    for start in range(0, len(labels), size):
        yield embeddings[start : start + size], labels[start : start + size]


@dataclass(frozen=True)
class IdentificationScores:
    """Closed-set rank-1/rank-5 and open-set detection-and-identification rate at a false-alarm rate."""

    gallery_identities: int
    probes: int
    rank1: float
    rank5: float
    impostor_probes: int
    far: float
    dir_at_far: float | None
    threshold_at_far: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_gallery(identities: list[str]) -> tuple[list[int], list[int], list[int]]:
    """LFW's identification split by position: the first image of each person with two or more images is the
    gallery, the rest of theirs are probes; every other such person (by sorted name) is left out of the
    open-set gallery, and their images with those of single-image people are the impostors.

    Returns (gallery rows, genuine probe rows, impostor rows) of the open-set protocol; the closed set uses the
    gallery and probe rows of every person with two or more images."""
    by_name: dict[str, list[int]] = {}
    for row, name in enumerate(identities):
        by_name.setdefault(name, []).append(row)
    gallery, probes, impostors = [], [], []
    repeated = sorted(name for name, rows in by_name.items() if len(rows) >= MIN_GALLERY_IMAGES)
    for n, name in enumerate(repeated):
        rows = by_name[name]
        if n % 2:
            impostors += rows
        else:
            gallery.append(rows[0])
            probes += rows[1:]
    impostors += [rows[0] for rows in by_name.values() if len(rows) == 1]
    return gallery, probes, impostors


def identification_scores(
    embeddings: np.ndarray,
    identities: list[str],
    *,
    metric: str = "euclidean",
    far: float = 0.01,
    chunk: int = 65536,
) -> IdentificationScores:
    """Rank-1/rank-5 with every person of two or more images in the gallery, and DIR at `far` with half of
    them left out as impostors (`split_gallery`)."""
    names = sorted(set(identities))
    label_of = {name: i for i, name in enumerate(names)}
    labels = np.array([label_of[n] for n in identities], np.int64)
    by_name: dict[str, list[int]] = {}
    for row, name in enumerate(identities):
        by_name.setdefault(name, []).append(row)
    repeated = [rows for rows in by_name.values() if len(rows) >= MIN_GALLERY_IMAGES]
    if not repeated:
        raise UsageError("identification scores need people with two or more images")
    gallery = np.array([rows[0] for rows in repeated])
    probes = np.array([r for rows in repeated for r in rows[1:]])
    _, top = nearest_identities(
        embeddings[probes], in_chunks(embeddings[gallery], labels[gallery], chunk), 5, metric
    )
    truth = labels[probes][:, None]
    rank1 = float((top[:, :1] == truth).any(axis=1).mean())
    rank5 = float((top == truth).any(axis=1).mean())
    open_gallery, genuine, impostors = split_gallery(identities)
    dir_value = threshold = None
    if open_gallery and genuine and impostors:
        g = np.array(open_gallery)
        chunks = list(in_chunks(embeddings[g], labels[g], chunk))
        gd, gl = nearest_identities(embeddings[genuine], chunks, 1, metric)
        idist, _ = nearest_identities(embeddings[impostors], chunks, 1, metric)
        threshold = threshold_at_far(idist[:, 0], far)
        hit = (gl[:, 0] == labels[genuine]) & (gd[:, 0] <= threshold)
        dir_value = float(hit.mean())
    return IdentificationScores(
        gallery_identities=len(gallery),
        probes=len(probes),
        rank1=rank1,
        rank5=rank5,
        impostor_probes=len(impostors),
        far=far,
        dir_at_far=dir_value,
        threshold_at_far=threshold,
    )


def threshold_at_far(impostor_distances: np.ndarray, far: float) -> float:
    """The largest threshold that accepts at most a fraction `far` of the impostors (accept: distance <= t)."""
    d = np.sort(np.asarray(impostor_distances, np.float64))
    allowed = int(np.floor(far * len(d)))
    if allowed >= len(d):
        return float(d[-1])
    below = d[allowed]
    return float(np.nextafter(below, -np.inf))


@dataclass(frozen=True)
class ClusterScores:
    """Pairwise precision, recall, F-measure and NMI of a clustering against the true identities."""

    faces: int
    clusters: int
    identities: int
    precision: float
    recall: float
    f_measure: float
    nmi: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contingency(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    _, t = np.unique(truth, return_inverse=True)
    _, f = np.unique(found, return_inverse=True)
    table = np.zeros((t.max() + 1, f.max() + 1), np.int64)
    np.add.at(table, (t, f), 1)
    return table


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def cluster_scores(truth: list[str] | np.ndarray, found: list[int] | np.ndarray) -> ClusterScores:
    """Pairwise scores (a pair of faces is found when both share a cluster, true when both share an identity)
    and NMI (mutual information over the arithmetic mean of the two entropies, as scikit-learn's default)."""
    truth, found = np.asarray(truth), np.asarray(found)
    if len(truth) != len(found) or len(truth) == 0:
        raise ValueError("cluster_scores needs one cluster per face and at least one face")
    table = _contingency(truth, found)
    together = _pairs(table)
    found_pairs, true_pairs = _pairs(table.sum(axis=0)), _pairs(table.sum(axis=1))
    precision = together / found_pairs if found_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = table.sum()
    joint = table[table > 0] / n
    outer = np.outer(table.sum(axis=1), table.sum(axis=0))[table > 0] / n**2
    mutual = float((joint * np.log(joint / outer)).sum())
    h_true, h_found = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    mean = (h_true + h_found) / 2
    nmi = 1.0 if mean == 0 else max(0.0, mutual / mean)
    return ClusterScores(
        faces=int(n),
        clusters=table.shape[1],
        identities=table.shape[0],
        precision=precision,
        recall=recall,
        f_measure=f,
        nmi=nmi,
    )


def agglomerate(embeddings: np.ndarray, cut: float, metric: str, linkage: str) -> np.ndarray:
    """Cluster number of each unit embedding, cut at distance `cut` of `metric`; clusters numbered by size
    (largest first), ties by first face."""
    try:
        from sklearn.cluster import AgglomerativeClustering
    except ImportError:
        raise UsageError("clustering needs scikit-learn: pip install 'facetool[cluster]'") from None
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), np.int64)
    cosine_cut = cut / 2 if metric == "euclidean" else cut
    found = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage=linkage, distance_threshold=cosine_cut
    ).fit_predict(embeddings.astype(np.float64))
    sizes = np.bincount(found)
    first = {k: int(np.nonzero(found == k)[0][0]) for k in range(len(sizes))}
    order = sorted(range(len(sizes)), key=lambda k: (-sizes[k], first[k]))
    renumber = np.empty(len(sizes), np.int64)
    renumber[order] = np.arange(len(sizes))
    return renumber[found]


def people_scores(
    embed: Callable[[np.ndarray], np.ndarray],
    cache: FaceCache,
    people: set[str],
    *,
    batch_size: int,
    metric: str,
    far: float,
    cut: float,
    cluster_min_faces: int = 1,
) -> tuple[IdentificationScores, ClusterScores]:
    """Identification and clustering scores of every cached face of `people` (the scored pairs' people):
    `identification_scores`, and agglomerative clustering cut at `cut` against the true identities, of the
    people with at least `cluster_min_faces` faces."""
    names = [normalize_identity(cache.identities[label]) for label in cache.labels]
    rows = np.array([i for i, name in enumerate(names) if name in people], np.int64)
    if len(rows) == 0:
        raise UsageError(f"{cache.path}: no faces of the scored people to identify")
    emb = np.concatenate(
        [embed(cache.read_faces(rows[s : s + batch_size])) for s in range(0, len(rows), batch_size)]
    )
    identities = [names[i] for i in rows]
    counts = Counter(identities)
    clustered = np.array([counts[name] >= cluster_min_faces for name in identities])
    if not clustered.any():
        raise UsageError(f"{cache.path}: no scored person has {cluster_min_faces} or more faces to cluster")
    found = agglomerate(emb[clustered], cut, metric, "average")
    clusters = cluster_scores([name for name, keep in zip(identities, clustered, strict=True) if keep], found)
    return identification_scores(emb, identities, metric=metric, far=far), clusters
