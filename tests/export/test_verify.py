"""`facetool verify` on real LFW photos with a tiny model trained on SSD crops of those people."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.config.export import VerifyConfig
from facetool.errors import UsageError
from facetool.models import load_embedding_model
from facetool.models.model_card import card_path
from facetool.verification import verify_pair


def cli(*args: object, models: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "FACETOOL_MODELS": str(models)}
    return subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def plain_distance(checkpoint: Path, cache_path: Path, a: str, b: str) -> float:
    """Squared L2 distance of two cached crops by one plain forward pass of the checkpoint's network."""
    model, info = load_embedding_model(checkpoint)
    with open_cache(cache_path) as cache:
        faces = cache.read_faces(np.array([cache.paths.index(a), cache.paths.index(b)]))
    x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    x = F.interpolate(x, size=(info.image_size, info.image_size), mode="bilinear", antialias=True)
    with torch.no_grad():
        e = F.normalize(model(x), dim=1).numpy()
    return float(((e[0] - e[1]) ** 2).sum())


@pytest.fixture(scope="module")
def pairs(trained) -> dict[str, tuple[str, str]]:
    first, second = trained.people[0], trained.people[1]
    return {
        "same": (f"{first}/{first}_0001.jpg", f"{first}/{first}_0002.jpg"),
        "different": (f"{first}/{first}_0001.jpg", f"{second}/{second}_0001.jpg"),
    }


@pytest.fixture(scope="module")
def detector_here(ssd_dir: Path) -> VerifyConfig:
    """Only the detector's folder is set: the crop settings come from the model card."""
    return VerifyConfig(detect=DetectConfig(model_dir=ssd_dir))


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_verify_crops_as_detect_did_and_decides_by_the_card_threshold(
    trained, with_threshold, pairs, detector_here, fmt
):
    model = with_threshold[fmt]
    report = json.loads(card_path(model).read_text())["verification"]
    assert report["distance"] == "euclidean" and 0 <= report["threshold"] <= 4
    for a, b in pairs.values():
        result = verify_pair(model, trained.data_dir / a, trained.data_dir / b, detector_here)
        expected = plain_distance(trained.checkpoint, trained.cache, a, b)
        assert abs(result.distance - expected) < 1e-4
        assert result.threshold == report["threshold"] and result.metric == "euclidean"
        assert result.same_person == (result.distance <= report["threshold"])
        assert result.runtime == ("onnx" if fmt == "onnx" else "torch")
        assert all(face.detected and face.score >= 0.5 for face in result.faces)


def test_cli_json_and_text(trained, with_threshold, pairs, ssd_dir):
    a, b = (trained.data_dir / p for p in pairs["different"])
    distance = plain_distance(trained.checkpoint, trained.cache, *pairs["different"])
    done = cli("verify", with_threshold["onnx"], a, b, "--json", models=ssd_dir)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert abs(result["distance"] - distance) < 1e-4 and result["runtime"] == "onnx"
    assert result["same_person"] == (result["distance"] <= result["threshold"])
    threshold = distance / 2
    done = cli("verify", with_threshold["safetensors"], a, b, "--threshold", threshold, models=ssd_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("different people"), lines
    assert f"distance {distance:.4f}" in lines[0] and f"threshold {threshold:.4f} (--threshold)" in lines[0]


def test_explicit_threshold_decides(trained, with_threshold, pairs, detector_here):
    a, b = (trained.data_dir / p for p in pairs["same"])
    distance = plain_distance(trained.checkpoint, trained.cache, *pairs["same"])
    for threshold, same in ((distance * 1.5 + 1e-3, True), (distance * 0.5, False)):
        config = detector_here.model_copy(update={"threshold": threshold})
        result = verify_pair(with_threshold["onnx"], a, b, config)
        assert result.same_person is same and result.threshold_source == "--threshold"


def test_photo_without_a_face_is_used_whole_and_said_so(trained, with_threshold, pairs, ssd_dir, tmp_path):
    blank = tmp_path / "wall.png"
    ramp = np.tile(np.linspace(40, 200, 120, dtype=np.uint8), (90, 1))
    cv2.imwrite(str(blank), np.dstack([ramp, ramp, ramp]))
    photo = trained.data_dir / pairs["same"][0]
    done = cli("verify", with_threshold["safetensors"], photo, blank, models=ssd_dir)
    assert done.returncode == 0, done.stderr
    note = next(line for line in done.stdout.splitlines() if line.startswith("note:"))
    assert f"no face found in {blank}" in note and "used the whole image, resized to 64x64" in note
    result = verify_pair(
        with_threshold["safetensors"], photo, blank, VerifyConfig(detect=DetectConfig(model_dir=ssd_dir))
    )
    assert [f.detected for f in result.faces] == [True, False]


def test_unreadable_image_is_one_line_naming_it(trained, with_threshold, pairs, ssd_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a picture\n")
    done = cli("verify", with_threshold["onnx"], trained.data_dir / pairs["same"][0], broken, models=ssd_dir)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and str(broken) in done.stderr


def test_checkpoint_without_card_needs_a_threshold(trained, pairs, ssd_dir):
    a, b = (trained.data_dir / p for p in pairs["same"])
    here = DetectConfig(model_dir=ssd_dir)
    with pytest.raises(UsageError, match="no verification threshold: give --threshold"):
        verify_pair(trained.checkpoint, a, b, VerifyConfig(detect=here))
    result = verify_pair(trained.checkpoint, a, b, VerifyConfig(detect=here, threshold=1.0))
    assert result.runtime == "torch" and result.threshold_source == "--threshold"
    wrong = cli("verify", trained.checkpoint, a, b, "--runtime", "onnx", "--threshold", "1", models=ssd_dir)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "needs an .onnx file" in wrong.stderr
