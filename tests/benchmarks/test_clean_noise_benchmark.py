"""benchmarks/clean_noise.py end to end on real LFW faces: the noise injected is the noise asked for, its
precision and recall are those of the flags `dataset clean` wrote, and no input is changed."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from cache_helpers import write_people_cache
from cli_helpers import run_facetool
from lfw_mini import names_of, pick
from train_helpers import SIZE, small_train_command

from facetool.cache import open_cache
from facetool.curation import pairs_identities
from facetool.inference import load_embedder

ROOT = Path(__file__).resolve().parents[2]
RECIPE = (
    "flip = true\nmodels = 2\n\n[train]\n"
    'backbone = "test-cnn"\nimage_size = 48\nembedding_dim = 16\nnum_epochs = 1\nepoch_size = 2\n'
    'batch_size = 12\npeople_per_batch = 6\nimages_per_person = 3\ndevice = "cpu"\nthreads = 1\n'
    "validation.fraction = 0.0\n"
)
PEOPLE = 14
SPLITS = 2


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ratio(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else "n/a"


def clean_settings(model: Path, cache_path: Path) -> list[str]:
    """A threshold at the 5th percentile of the squared distances between the model's embeddings of the
    cache's faces, and the far rule's limit at the 70th: settings at which the rules fire on some faces and
    leave enough to train on, whatever the scale of a barely trained model's distances."""
    embedder, _ = load_embedder(model, device="cpu")
    with open_cache(cache_path) as cache:
        x = embedder(cache.read_faces(np.arange(len(cache))))
    low, high = np.percentile((2 - 2 * x @ x.T)[np.triu_indices(len(x), 1)], [5, 70])
    return ["--threshold", str(low), "--clean-set", f"far_factor={high / low}"]


def test_noise_is_as_asked_and_scores_follow_the_flags(tmp_path: Path, lfw_dir: Path, shared: Path) -> None:
    devtrain = shared / "lfw" / "pairsDevTrain.txt"
    counts = {n: len(list((lfw_dir / n).glob("*.jpg"))) for n in sorted(pairs_identities(devtrain))[:300]}
    train_people = [n for n, c in counts.items() if 4 <= c <= 8][: PEOPLE + 2]
    lines = (shared / "lfw" / "pairsDevTest.txt").read_text().splitlines()[1:]
    chosen = pick(lines, lfw_dir, 10)
    devtest = tmp_path / "pairsDevTest.txt"
    devtest.write_text("\n".join(["10", *chosen]) + "\n")
    test_people = sorted(set().union(*(names_of(line) for line in chosen)))
    faces = write_people_cache(lfw_dir, tmp_path / "faces.h5", train_people + test_people, 8, SIZE)
    other = write_people_cache(lfw_dir, tmp_path / "other.h5", test_people, 8, SIZE)
    trained = run_facetool(*small_train_command(other, tmp_path / "model", settings={"epoch_size": "2"})[3:])
    assert trained.returncode == 0, trained.stderr[-2000:]
    model = tmp_path / "model" / "last.pth"
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    inputs = [faces, model, recipe, devtest]
    before = [digest(p) for p in inputs]
    work, report = tmp_path / "work", tmp_path / "report.md"
    args = ["--faces", faces, "--model", model, *clean_settings(model, faces), "--work", work, "--config", recipe,
            "--people", PEOPLE, "--splits", SPLITS, "--devtest", devtest, "--set", "num_epochs=1",
            "--clean-baseline", "--report", report]  # fmt: skip
    result = subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "clean_noise.py", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FACETOOL_SHARED": str(shared), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [digest(p) for p in inputs] == before

    truth = json.loads((work / "noisy.h5.truth.json").read_text())
    with open_cache(work / "devtrain.h5") as clean, open_cache(work / "noisy.h5") as noisy:
        assert sorted(set(clean.identities)) == sorted(train_people)[:PEOPLE]
        assert not set(clean.identities) & set(test_people)
        assert noisy.paths == clean.paths
        everything = np.arange(len(clean))
        assert all(
            a.tobytes() == b.tobytes()
            for a, b in zip(noisy.payloads(everything), clean.payloads(everything), strict=True)
        )
        label = dict(zip(noisy.paths, (noisy.identities[k] for k in noisy.labels), strict=True))
        n = len(clean)
    assert truth["faces"] == n and len(truth["moved"]) == round(0.05 * n) > 0
    assert len(truth["splits"]) == SPLITS
    split_person = {s["new_identity"]: s["identity"] for s in truth["splits"]}
    moved = {m["path"]: m for m in truth["moved"]}
    for path, now in label.items():
        person = path.split("/")[0]
        if path in moved:
            assert now == moved[path]["to"] and split_person.get(now, now) != person
        elif any(path in s["paths"] for s in truth["splits"]):
            assert split_person[now] == person
        else:
            assert now == person
    for split in truth["splits"]:
        halves = [p for p, now in label.items() if split_person.get(now, now) == split["identity"]]
        assert {label[p] for p in halves} == {split["identity"], split["new_identity"]}

    with (work / "noisy-cleaned-0.h5.flags.csv").open(newline="") as handle:
        flags = list(csv.DictReader(handle))
    flagged = {f["path"] for f in flags if f["rule"] in ("far", "closer-to-other", "duplicate")}
    pairs = {frozenset((f["identity"], f["other"])) for f in flags if f["rule"] == "same-person"}
    splits = {frozenset((s["identity"], s["new_identity"])) for s in truth["splits"]}
    hits, found = len(flagged & set(moved)), len(pairs & splits)
    assert flagged, "the threshold flags no face: nothing is measured"
    out = result.stdout
    assert f"precision {ratio(hits, len(flagged))}, recall {ratio(hits, len(moved))} " in out
    assert f"({hits} of {len(flagged)} flagged faces were moved, of {len(moved)} moved;" in out
    assert f"precision {ratio(found, len(pairs))}, recall {ratio(found, SPLITS)} " in out
    with open_cache(work / "noisy-cleaned-0.h5") as cleaned:
        assert not flagged & set(cleaned.paths) and len(cleaned) == n - len(flagged)
    for key in ("noisy", "cleaned", "clean"):
        assert (work / f"eval-{key}" / "report.json").is_file()
    text = report.read_text()
    assert "### Label noise and dataset clean on LFW (issue 32)" in text
    assert "python benchmarks/clean_noise.py --faces" in text and "trained on the cleaned cache" in text
