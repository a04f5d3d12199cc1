"""A rerun of `detect` makes the cache match the folder; GIF/TIFF images; NFC/NFD names; outputs inside the input."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import pytest
from detect_helpers import KNOWN_IMAGES, run_cli
from PIL import Image

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.detection.runner import detect_directory
from facetool.errors import UsageError


def _config(ssd_dir: Path) -> DetectConfig:
    return DetectConfig(workers=1, model_dir=ssd_dir, model_format="caffe", image_size=64)


def _copy(lfw_dir: Path, rel: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lfw_dir / rel, target)
    return target


def test_rerun_drops_deleted_and_moved_images_and_retries_failures(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    data, cache = tmp_path / "data", tmp_path / "faces.h5"
    a, b, c, d = KNOWN_IMAGES
    _copy(lfw_dir, a, data / "Anna" / "one.jpg")
    _copy(lfw_dir, b, data / "Anna" / "two.jpg")
    _copy(lfw_dir, c, data / "Bert" / "one.jpg")
    broken = data / "Bert" / "two.jpg"
    broken.write_bytes(b"not an image at all")
    first = run_cli("detect", data, "-o", cache, "--model-dir", ssd_dir, "-j", "1", "--no-progress")
    assert first.returncode == 0, first.stderr
    with open_cache(cache) as before:
        assert before.paths == ["Anna/one.jpg", "Anna/two.jpg", "Bert/one.jpg"]
        assert [f.path for f in before.failures] == ["Bert/two.jpg"]

    (data / "Anna" / "one.jpg").unlink()  # deleted
    (data / "Anna" / "two.jpg").rename(data / "Bert" / "three.jpg")  # moved to another identity
    _copy(lfw_dir, d, broken)  # the failing image fixed (its size changes)
    second = run_cli("detect", data, "-o", cache, "--model-dir", ssd_dir, "-j", "1", "--no-progress")
    assert second.returncode == 0, second.stderr

    with open_cache(cache) as after:
        assert after.paths == ["Bert/one.jpg", "Bert/three.jpg", "Bert/two.jpg"]
        assert after.identities == ["Bert"] and not after.failures
    assert "removed Anna/one.jpg: no longer in the folder" in second.stderr
    assert "removed Anna/two.jpg: no longer in the folder" in second.stderr
    row = next(line for line in second.stdout.splitlines() if "removed (no longer" in line)
    assert row.split("│")[-2].strip() == "2"


def test_rerun_retries_a_failure_whose_file_did_not_change(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    data, cache = tmp_path / "data", tmp_path / "faces.h5"
    image = _copy(lfw_dir, KNOWN_IMAGES[0], data / "Anna" / "big.jpg")
    small = _config(ssd_dir).model_copy(update={"max_pixels": 1000})
    detect_directory(data, cache, small)
    with open_cache(cache) as first:
        assert len(first) == 0 and "too large" in first.failures[0].reason
    summary = detect_directory(data, cache, _config(ssd_dir))  # same file, a setting that now admits it
    assert summary.retried == 1 and summary.faces == 1
    with open_cache(cache) as second:
        assert second.paths == ["Anna/big.jpg"] and not second.failures
    assert image.exists()


def test_gif_and_tiff_images_give_faces(lfw_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "faces.h5"
    (data / "Anna").mkdir(parents=True)
    source = Image.open(lfw_dir / KNOWN_IMAGES[0])
    source.save(data / "Anna" / "a.gif")
    source.save(data / "Anna" / "b.tif")
    source.save(data / "Anna" / "c.TIFF")
    summary = detect_directory(data, cache, _config(ssd_dir))
    assert summary.images == 3 and summary.faces == 3 and not summary.failed
    with open_cache(cache) as faces:
        assert faces.paths == ["Anna/a.gif", "Anna/b.tif", "Anna/c.TIFF"] and faces.detected.all()


def test_nfc_and_nfd_spellings_are_one_identity(lfw_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "faces.h5"
    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    _copy(lfw_dir, KNOWN_IMAGES[0], data / nfc / "a.jpg")
    _copy(lfw_dir, KNOWN_IMAGES[1], data / nfd / "b.jpg")
    detect_directory(data, cache, _config(ssd_dir))
    with open_cache(cache) as faces:
        assert faces.identities == [nfc] and len(faces) == 2
        assert list(faces.labels) == [0, 0]


def test_output_inside_the_data_folder_is_refused(lfw_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _copy(lfw_dir, KNOWN_IMAGES[0], data / "Anna" / "a.jpg")
    inside = data / "out" / "faces.h5"
    with pytest.raises(UsageError, match="inside the input folder"):
        detect_directory(data, inside, _config(ssd_dir))
    result = run_cli("detect", data, "-o", data / "faces.h5", "--model-dir", ssd_dir, "--no-progress")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {data / 'faces.h5'}:") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in data.iterdir()) == ["Anna"]
