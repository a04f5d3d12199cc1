"""`facetool detect` with the mtcnn detector and five-point alignment on real LFW folders, end to end: the cache
it makes, reruns and merges that would mix alignments, older caches, and the model card's crop settings."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import facetool_in_process
from detect_helpers import lfw_rgb, run_cli

from facetool.cache import open_cache
from facetool.cache.origin import recorded
from facetool.config.detect import DetectConfig
from facetool.curation import merge_caches
from facetool.detection import crop_face_from_file, detector_from_config, template
from facetool.detection.align import align_face
from facetool.detection.runner import detect_directory
from facetool.errors import UsageError
from facetool.models.card_schema import FaceCrop
from facetool.models.export import face_crop_from_meta
from facetool.models.model_card import crop_config

PEOPLE = ("Aaron_Peirsol", "Akhmed_Zakayev", "Alan_Ball")  # 4 + 3 + 2 photos


@pytest.fixture(scope="module")
def data(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mtcnn") / "data"
    root.mkdir()
    for name in PEOPLE:
        (root / name).symlink_to(lfw_dir / name, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def aligned_cache(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's command line, in a real subprocess."""
    out = tmp_path_factory.mktemp("aligned") / "faces.h5"
    args = ("detect", data, "--set", "detect.detector=mtcnn", "--set", "detect.align=five-point", "-o", out)
    result = run_cli(*args, "--no-progress", "-j", "2")
    assert result.returncode == 0, result.stderr
    assert "not aligned (no landmarks: box crop)" in result.stdout and "mtcnn" in result.stdout
    return out


def test_detect_makes_a_112_px_aligned_cache_with_landmarks(aligned_cache: Path, data: Path):
    with open_cache(aligned_cache) as cache:
        meta, n = cache.meta, len(cache)
        assert n == 9 and cache.image_size == 112 and cache.detected.all()
        assert meta["align"] == "five-point" and meta["detector"]["name"] == "mtcnn"
        assert (
            meta["detector"]["settings"]["min_face_size"] == 20
            and "device" not in meta["detector"]["settings"]
        )
        np.testing.assert_allclose(meta["template"]["points"], template(112), atol=1e-4)
        assert np.isfinite(cache.landmarks).all() and cache.landmarks.shape == (9, 5, 2)
        for i in (0, 5, 8):
            record = cache.record(i)
            boxed = record.box
            inside = (record.landmarks[:, 0] > boxed[0]) & (record.landmarks[:, 0] < boxed[2])
            assert inside.all(), record.path
            expected = align_face(lfw_rgb(data, record.path), record.landmarks, 112)
            difference = np.abs(expected.astype(int) - record.face.astype(int)).mean()
            assert difference < 4.0, (record.path, difference)  # JPEG at quality 95


def test_a_rerun_resumes_and_one_with_another_alignment_is_refused(aligned_cache: Path, data: Path):
    same = run_cli("detect", data, "--set", "detect.detector=mtcnn", "--set", "detect.align=five-point",
                   "-o", aligned_cache, "--no-progress", "-j", "1")  # fmt: skip
    assert same.returncode == 0, same.stderr
    processed = same.stdout.split("processed now")[1].split("\n")[0]
    assert processed.strip(" │") == "0", same.stdout
    with pytest.raises(UsageError) as caught:
        detect_directory(data, aligned_cache, DetectConfig(detector="mtcnn", image_size=112))
    assert "align 'five-point' (cache) vs 'none' (this run)" in str(caught.value)


def test_merging_aligned_and_box_crops_is_refused_naming_both(
    aligned_cache: Path, data: Path, tmp_path: Path
):
    boxes = tmp_path / "ssd.h5"
    detect_directory(data, boxes, DetectConfig(image_size=112, workers=1))
    with open_cache(boxes) as cache:
        assert cache.meta["align"] == "none" and cache.meta["template"] is None
        assert cache.meta["detector"]["name"] == "ssd" and np.isnan(cache.landmarks).all()
    with pytest.raises(UsageError) as caught:
        merge_caches([aligned_cache, boxes], tmp_path / "merged.h5")
    message = str(caught.value)
    assert f"{aligned_cache}: align 'five-point' vs {boxes}: 'none'" in message and "\n" not in message
    assert not (tmp_path / "merged.h5").exists()


def test_a_cache_of_an_older_facetool_stays_readable_and_resumable(data: Path, tmp_path: Path):
    """Before detector plugins a cache had no landmarks column, no alignment and an unnamed SSD detector."""
    cache_path = tmp_path / "old.h5"
    config = DetectConfig(image_size=64, workers=1)
    detect_directory(data, cache_path, config)
    with h5py.File(cache_path, "r+") as h5:
        del h5["faces/landmarks"]
        meta = json.loads(h5.attrs["meta"])
        for key in ("align", "template"):
            del meta[key]
        del meta["detector"]["name"]
        h5.attrs["meta"] = json.dumps(meta)
    with open_cache(cache_path) as cache:
        assert len(cache) == 9 and np.isnan(cache.landmarks).all() and cache.record(0).landmarks is None
    summary = detect_directory(data, cache_path, config)
    assert (summary.skipped, summary.processed) == (9, 0)
    with pytest.raises(UsageError, match=r"detector ssd .* \(cache\) vs mtcnn "):
        detect_directory(data, cache_path, DetectConfig(image_size=64, detector="mtcnn", workers=1))


def test_the_model_card_reproduces_the_cache_detection_and_alignment(aligned_cache: Path, data: Path):
    with open_cache(aligned_cache) as cache:
        crop = face_crop_from_meta(recorded(cache.meta), f"face cache {aligned_cache.name}")
        record = cache.record(2)
    card_crop = FaceCrop.model_validate(crop).model_dump(mode="json")
    assert card_crop["align"] == "five-point" and card_crop["detector"]["name"] == "mtcnn"
    config = crop_config(card_crop, None)
    assert (config.detector.name, config.align, config.image_size) == ("mtcnn", "five-point", 112)
    face = crop_face_from_file(data / record.path, detector_from_config(config), config)
    assert face.aligned
    np.testing.assert_allclose(face.landmarks, record.landmarks, atol=0.05)
    assert np.abs(face.face.astype(int) - record.face.astype(int)).mean() < 4.0
    assert crop_config(card_crop, DetectConfig(threshold=0.6)).align == "five-point"
    with pytest.raises(
        UsageError, match=r"detect.align = 'none', but the model card's face_crop.align is 'five-point'"
    ):
        crop_config(card_crop, DetectConfig(align="none"))


def test_plugins_list_shows_the_detectors():
    result = facetool_in_process("plugins", "list", "--kind", "detector", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"ssd", "mtcnn"} and all(rows[n]["status"] == "ok" for n in ("ssd", "mtcnn"))
    assert rows["ssd"]["kind"] == "detector" and "landmarks" in rows["mtcnn"]["description"]


def test_five_point_with_the_ssd_is_a_one_line_error(data: Path, tmp_path: Path):
    result = facetool_in_process("detect", data, "--set", "detect.align=five-point", "-o", tmp_path / "x.h5")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        len(lines) == 1
        and "detect.align = 'five-point'" in lines[0]
        and "detect.detector = 'ssd'" in lines[0]
    )
    assert not (tmp_path / "x.h5").exists()


def test_mtcnn_on_a_missing_gpu_is_one_line_not_a_failure_per_image(data: Path, tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = ("detect", data, "--set", "detect.detector=mtcnn", "--set", "detect.detector.device=cuda")
    result = run_cli(*args, "-o", tmp_path / "gpu.h5", "--no-progress", "-j", "1")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: detect.detector.device = 'cuda': CUDA is not available on this machine (use cpu)"
    ]
    with open_cache(tmp_path / "gpu.h5") as cache:
        assert len(cache) == 0 and not cache.failures
