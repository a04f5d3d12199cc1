"""`facetool cluster` on real LFW photos: the partition equals SciPy's hierarchical clustering of a plain forward
pass; photos are linked, never copied; a missing scikit-learn is one line."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_helpers import plain_embeddings
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

PEOPLE = 6


def cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def photos(trained, tmp_path_factory) -> Path:
    """A flat folder of the photos of 6 people (links), as a photo collection without names."""
    folder = tmp_path_factory.mktemp("collection") / "photos"
    folder.mkdir()
    for person in trained.people[:PEOPLE]:
        for image in sorted((trained.data_dir / person).glob("*.jpg")):
            (folder / image.name).symlink_to(image)
    return folder


def test_cluster_matches_scipy_and_links_the_photos(trained, exported, photos, ssd_dir, tmp_path):
    emb = plain_embeddings(trained.checkpoint, trained.cache)
    names = sorted(p.name for p in photos.iterdir())
    x = np.stack([emb[f"{n.rsplit('_', 1)[0]}/{n}"] for n in names])
    squared = pdist(x, "sqeuclidean")
    t = float(np.percentile(squared, 15))
    tree = linkage(squared, "average")
    expected = {
        frozenset(np.array(names)[fcluster(tree, t, "distance") == k])
        for k in set(fcluster(tree, t, "distance"))
    }
    assert 1 < len(expected) < len(names)

    out = tmp_path / "clusters"
    done = cli("cluster", exported["onnx"], photos, "-o", out, "--threshold", t,
               env={"FACETOOL_MODELS": str(ssd_dir)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((out / "faces.csv").open()))
    assert sorted(Path(r["photo"]).name for r in rows) == names
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["cluster"], set()).add(Path(row["photo"]).name)
    assert {frozenset(v) for v in found.values()} == expected
    for cluster, members in found.items():
        links = list((out / f"cluster-{cluster}").iterdir())
        assert all(link.is_symlink() for link in links)
        assert {Path(os.readlink(link)).name for link in links} == members
        sheet = (out / f"cluster-{cluster}.html").read_text()
        assert sheet.count('src="data:image/jpeg;base64,') == len(members)
    assert all(p.is_symlink() for p in photos.iterdir())

    again = cli("cluster", trained.checkpoint, photos, "-o", out, "--threshold", t)
    assert again.returncode == 2 and "not an empty folder" in again.stderr


def test_cluster_without_scikit_learn_is_one_line(trained, photos, tmp_path):
    blocker = tmp_path / "block"
    (blocker / "sklearn").mkdir(parents=True)
    (blocker / "sklearn" / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    done = cli("cluster", trained.checkpoint, photos, "-o", tmp_path / "c", "--threshold", 0.5, "--device", "cpu",
               env={"PYTHONPATH": path, "FACETOOL_MODELS": "/nonexistent"})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: clustering needs scikit-learn: pip install 'facetool[cluster]'"
    ]
    assert not (tmp_path / "c").exists()
