"""Identification and clustering scores on real LFW faces, each against a brute-force reference written here
one probe or one pair at a time (and scikit-learn's NMI as an independent reference)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import normalized_mutual_info_score

from facetool.evaluation.identification import (
    agglomerate,
    cluster_scores,
    identification_scores,
    in_chunks,
    nearest_identities,
    split_gallery,
    threshold_at_far,
)
from facetool.evaluation.pairs import read_pairs


@pytest.fixture(scope="module")
def faces(reference_embeddings) -> tuple[np.ndarray, list[str]]:
    paths = sorted(reference_embeddings)
    return np.stack([reference_embeddings[p] for p in paths]), [p.split("/")[0] for p in paths]


def distance(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    return float(1 - a @ b) if metric == "cosine" else float(((a - b) ** 2).sum())


def brute_nearest(
    probe: np.ndarray, gallery: np.ndarray, labels: list[int], metric: str
) -> list[tuple[float, int]]:
    best: dict[int, float] = {}
    for emb, label in zip(gallery, labels, strict=True):
        best[label] = min(best.get(label, np.inf), distance(probe, emb, metric))
    return sorted((d, label) for label, d in best.items())


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk", [1, 7, 100000])
def test_chunked_search_is_exact(faces, metric, chunk):
    emb, names = faces
    labels = np.array([sorted(set(names)).index(n) for n in names])
    probes, gallery, glabels = emb[:20], emb[20:], labels[20:]
    dist, found = nearest_identities(probes, in_chunks(gallery, glabels, chunk), 5, metric)
    for p in range(len(probes)):
        expected = brute_nearest(probes[p], gallery, list(glabels), metric)[:5]
        np.testing.assert_allclose(dist[p], [d for d, _ in expected], atol=1e-5)
        assert list(found[p]) == [label for _, label in expected]
    few, few_labels = nearest_identities(
        probes[:2], in_chunks(gallery[:3], np.array([0, 0, 1]), chunk), 4, metric
    )
    assert list(few_labels[0][2:]) == [-1, -1] and np.isinf(few[0][2:]).all()


def test_identification_scores_match_brute_force(faces):
    emb, names = faces
    scores = identification_scores(emb, names, far=0.1)
    people: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        people.setdefault(name, []).append(row)
    repeated = {n: rows for n, rows in people.items() if len(rows) >= 2}
    gallery = {n: rows[0] for n, rows in repeated.items()}
    hits1 = hits5 = total = 0
    for name, rows in repeated.items():
        for row in rows[1:]:
            ranked = sorted((distance(emb[row], emb[g], "euclidean"), n) for n, g in gallery.items())
            hits1 += ranked[0][1] == name
            hits5 += name in [n for _, n in ranked[:5]]
            total += 1
    assert scores.probes == total and scores.gallery_identities == len(gallery)
    assert scores.rank1 == pytest.approx(hits1 / total) and scores.rank5 == pytest.approx(hits5 / total)

    open_gallery, genuine, impostors = split_gallery(names)
    kept = {names[g]: g for g in open_gallery}
    assert not {names[i] for i in impostors} & set(kept)
    best = [min(distance(emb[i], emb[g], "euclidean") for g in kept.values()) for i in impostors]
    t = scores.threshold_at_far
    ranked, allowed = sorted(best), int(0.1 * len(best))
    assert ranked[allowed - 1] - 1e-5 <= t <= ranked[allowed] + 1e-5
    low = high = 0
    for row in genuine:
        d, name = min((distance(emb[row], emb[g], "euclidean"), n) for n, g in kept.items())
        low += name == names[row] and d <= t - 1e-5
        high += name == names[row] and d <= t + 1e-5
    assert low / len(genuine) <= scores.dir_at_far <= high / len(genuine)
    assert scores.impostor_probes == len(impostors)


def test_threshold_at_far_accepts_at_most_that_fraction():
    d = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    assert (d <= threshold_at_far(d, 0.2)).sum() == 2
    assert (d <= threshold_at_far(d, 0.05)).sum() == 0
    assert (d <= threshold_at_far(d, 1.0)).sum() == 10


def test_cluster_scores_match_pair_counting_and_sklearn_nmi(faces):
    emb, names = faces
    cut = float(np.percentile((1 - emb @ emb.T)[np.triu_indices(len(emb), 1)], 5))
    found = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=cut
    ).fit_predict(emb)
    assert 1 < len(set(found)) < len(names)
    scores = cluster_scores(names, found)
    together = same_cluster = same_person = 0
    for a, b in itertools.combinations(range(len(names)), 2):
        c, p = found[a] == found[b], names[a] == names[b]
        together += c and p
        same_cluster += c
        same_person += p
    precision, recall = together / same_cluster, together / same_person
    assert scores.precision == pytest.approx(precision) and scores.recall == pytest.approx(recall)
    assert scores.f_measure == pytest.approx(2 * precision * recall / (precision + recall))
    assert scores.nmi == pytest.approx(normalized_mutual_info_score(names, found))
    assert scores.clusters == len(set(found)) and scores.identities == len(set(names))
    perfect = cluster_scores(names, [sorted(set(names)).index(n) for n in names])
    assert (perfect.precision, perfect.recall, perfect.nmi) == (1.0, 1.0, pytest.approx(1.0))


def test_eval_reports_identification_and_clustering(
    facetool_cli, checkpoint, pair_cache, small_pairs, reference_embeddings, tmp_path
):
    out = tmp_path / "eval"
    args = ["eval", checkpoint, "--data", pair_cache, "--pairs", small_pairs.view2, "--out", out]
    done = facetool_cli(*args, "--identification", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "identification: rank-1" in done.stdout and "clustering: precision" in done.stdout
    report = json.loads((out / "report.json").read_text())
    people = set(read_pairs(small_pairs.view2).people)
    paths = sorted(p for p in reference_embeddings if p.split("/")[0] in people)
    emb = np.stack([reference_embeddings[p] for p in paths])
    names = [p.split("/")[0] for p in paths]
    expected = identification_scores(emb, names)
    got = report["identification"]
    assert (got["rank1"], got["rank5"], got["probes"]) == (expected.rank1, expected.rank5, expected.probes)
    cut = float(np.mean(report["fold_threshold"]))
    clusters = cluster_scores(names, agglomerate(emb, cut, "euclidean", "average"))
    assert report["clustering"] == pytest.approx(clusters.to_dict())
    counts = {name: names.count(name) for name in names}
    assert max(counts.values()) >= 3 > min(counts.values()), "the test needs people above and below 3 faces"
    several = facetool_cli(
        *args[:-1],
        tmp_path / "several",
        "--identification",
        "--set",
        "clustering_min_faces=3",
        "--device",
        "cpu",
    )
    assert several.returncode == 0, several.stderr
    kept = [i for i, name in enumerate(names) if counts[name] >= 3]
    only = cluster_scores([names[i] for i in kept], agglomerate(emb[kept], cut, "euclidean", "average"))
    report = json.loads((tmp_path / "several" / "report.json").read_text())
    assert report["clustering"] == pytest.approx(only.to_dict())
    assert report["identification"]["rank1"] == expected.rank1, "identification still scores every face"
    plain = facetool_cli(*args[:-1], tmp_path / "plain", "--device", "cpu")
    assert plain.returncode == 0, plain.stderr
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["identification"] is None
