"""`facetool gallery build` and `facetool identify` on real LFW photos, with the tiny model trained on SSD crops of
those people; distances checked against a brute-force search over a plain forward pass of the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from model_helpers import plain_embeddings

from facetool.cache import CacheWriter
from facetool.models.model_card import card_path

KNOWN = 8


def cli(*args: object, models: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "FACETOOL_MODELS": str(models)}
    return subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def brute_force(probe: np.ndarray, gallery: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """Every identity with its nearest face's squared distance, nearest first, one face at a time."""
    best: dict[str, float] = {}
    for path, emb in gallery.items():
        person = path.split("/")[0]
        d = float(((probe - emb) ** 2).sum())
        best[person] = min(best.get(person, np.inf), d)
    return sorted(best.items(), key=lambda item: (item[1], item[0]))


@pytest.fixture(scope="module")
def plain(trained) -> dict[str, np.ndarray]:
    return plain_embeddings(trained.checkpoint, trained.cache)


@pytest.fixture(scope="module")
def folders(trained, tmp_path_factory) -> tuple[Path, list[Path], list[str]]:
    """A gallery of the first two photos of 8 people (links), probes: the third photo of those 8 and the first
    of 4 people left out of the gallery."""
    root = tmp_path_factory.mktemp("identify")
    rels = []
    for person in trained.people[:KNOWN]:
        (root / "gallery" / person).mkdir(parents=True)
        for n in (1, 2):
            name = f"{person}_{n:04d}.jpg"
            (root / "gallery" / person / name).symlink_to(trained.data_dir / person / name)
            rels.append(f"{person}/{name}")
    probes = [trained.data_dir / p / f"{p}_0003.jpg" for p in trained.people[:KNOWN]]
    probes += [trained.data_dir / p / f"{p}_0001.jpg" for p in trained.people[KNOWN:]]
    return root / "gallery", probes, rels


def test_build_then_identify_matches_brute_force_and_names_unknowns(
    trained, with_threshold, plain, folders, ssd_dir, tmp_path
):
    gallery_dir, probes, rels = folders
    model = with_threshold["onnx"]
    card = json.loads(card_path(model).read_text())
    before = {p: p.stat().st_mtime_ns for p in gallery_dir.rglob("*")}
    index = tmp_path / "gallery.h5"
    done = cli("gallery", "build", model, gallery_dir, "-o", index, models=ssd_dir)
    assert done.returncode == 0, done.stderr
    assert before == {p: p.stat().st_mtime_ns for p in gallery_dir.rglob("*")}
    with h5py.File(index, "r") as f:
        assert f.attrs["model_sha256"] == card["sha256"]
        ids = [s.decode() for s in f["identities"][()]]
        assert ids == sorted(trained.people[:KNOWN])
        stored = dict(zip([s.decode() for s in f["paths"][()]], f["embeddings"][()], strict=True))
        centres, labels = f["centres"][()], f["labels"][()]
    assert len(stored) == len(rels)
    by_rel = {str(Path(p).relative_to(gallery_dir)): e for p, e in stored.items()}
    for rel in rels:
        np.testing.assert_allclose(by_rel[rel], plain[rel], atol=1e-4)
    for k, person in enumerate(ids):
        mean = np.mean([plain[r] for r in rels if r.startswith(person + "/")], axis=0)
        np.testing.assert_allclose(centres[k], mean / np.linalg.norm(mean), atol=1e-4)
        assert (labels == k).sum() == 2

    threshold = card["verification"]["threshold"]
    gallery = {rel: plain[rel] for rel in rels}
    for source in (
        index,
        gallery_dir,
    ):
        done = cli("identify", model, *probes, "--gallery", source, "--top-k", 3, "--json", models=ssd_dir)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["threshold"] == threshold and result["gallery_faces"] == 2 * KNOWN
        for probe, found in zip(probes, result["probes"], strict=True):
            expected = brute_force(plain[f"{probe.parent.name}/{probe.name}"], gallery)[:3]
            assert found["probe"] == str(probe)
            assert [m["identity"] for m in found["matches"]] == [name for name, _ in expected]
            np.testing.assert_allclose(
                [m["distance"] for m in found["matches"]], [d for _, d in expected], atol=1e-4
            )
            verdict = expected[0][0] if expected[0][1] <= threshold else None
            assert found["identity"] == verdict
    text = cli("identify", model, probes[0], "--gallery", index, "--chunk-faces", 1, models=ssd_dir)
    assert text.returncode == 0, text.stderr
    assert str(probes[0]) in text.stdout


def test_bad_inputs_end_in_one_line(trained, with_threshold, folders, ssd_dir, tmp_path):
    gallery_dir, probes, _ = folders
    index = tmp_path / "gallery.h5"
    done = cli("gallery", "build", with_threshold["onnx"], gallery_dir, "-o", index, models=ssd_dir)
    assert done.returncode == 0, done.stderr

    def one_line(*args: object) -> str:
        done = cli(*args, models=ssd_dir)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        return done.stderr

    other = with_threshold["safetensors"]
    assert "was built with model model.onnx" in one_line("identify", other, probes[0], "--gallery", index)
    empty = tmp_path / "empty"
    (empty / "nobody").mkdir(parents=True)
    assert "no <identity>/<images> sub-folders" in one_line(
        "gallery", "build", other, empty, "-o", tmp_path / "g.h5"
    )
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    assert f"{blank}: no face found" in one_line("identify", other, blank, "--gallery", gallery_dir)
    no_faces = tmp_path / "none.h5"
    with CacheWriter(no_faces, image_size=64) as writer:
        writer.commit()
    assert "has no identities" in one_line("gallery", "build", other, no_faces, "-o", tmp_path / "g2.h5")
    assert not (tmp_path / "g.h5").exists() and not (tmp_path / "g2.h5").exists()
