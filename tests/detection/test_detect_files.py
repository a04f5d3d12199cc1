"""Awkward inputs: a corpus of bad and unusual files generated here, run through the real `facetool detect`."""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from detect_helpers import KNOWN_IMAGES, lfw_rgb, run_cli
from PIL import Image

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.detection.images import ImageDecodeError, decode_image, read_image
from facetool.detection.runner import detect_directory
from facetool.detection.scan import scan_images
from facetool.errors import UsageError

UNICODE_ID = "Zoë_Ångström"
UNICODE_FILE = "фото_0001.jpg"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def save(image: Image.Image, path: Path, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **kwargs)


def build_corpus(root: Path, face: np.ndarray) -> None:
    """One folder per case; `face` is an upright LFW image (RGB)."""
    pil = Image.fromarray(face)
    save(pil, root / "Upper_Case" / "face_0001.JPG", "JPEG", quality=95)
    save(pil, root / "Upper_Case" / "face_0002.PNG", "PNG")
    save(pil, root / "Other_Formats" / "face.bmp", "BMP")
    save(pil, root / "Other_Formats" / "face.webp", "WEBP", quality=95)
    save(pil.convert("CMYK"), root / "Cmyk" / "cmyk.jpg", "JPEG", quality=95)
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    (root / "Sixteen_Bit").mkdir()
    cv2.imwrite(str(root / "Sixteen_Bit" / "grey16.png"), grey.astype(np.uint16) * 257)
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    save(Image.fromarray(rgba), root / "Alpha" / "rgba.png", "PNG")
    save(
        pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), root / "Palette" / "palette.png", "PNG"
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees; viewers rotate it clockwise to show it upright
    save(Image.fromarray(np.rot90(face).copy()), root / "Exif" / "rotated.jpg", "JPEG", quality=95, exif=exif)
    save(pil, root / "Exif" / "upright.jpg", "JPEG", quality=95)
    save(pil, root / UNICODE_ID / UNICODE_FILE, "JPEG", quality=95)
    save(Image.new("RGB", (250, 250), (128, 128, 128)), root / "No_Face" / "grey.png", "PNG")
    broken = root / "Broken"
    broken.mkdir()
    jpeg = (root / "Upper_Case" / "face_0001.JPG").read_bytes()
    (broken / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (broken / "zero.jpg").write_bytes(b"")
    (broken / "text.jpg").write_text("this is not an image\n")
    (broken / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (root / "Nobody").mkdir()
    (root / "Nobody" / "notes.txt").write_text("no images here")


@pytest.fixture(scope="module")
def corpus(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("corpus") / "data"
    face = lfw_rgb(lfw_dir, KNOWN_IMAGES[0])
    build_corpus(root, face)
    return root, face


@pytest.fixture(scope="module")
def corpus_run(corpus, tmp_path_factory: pytest.TempPathFactory):
    root, _ = corpus
    cache = tmp_path_factory.mktemp("corpus_out") / "faces.h5"
    result = run_cli("detect", root, "-o", cache, "--workers", "2", "--no-progress", timeout=300)
    return result, cache


def test_corpus_run_finishes_and_reports(corpus_run):
    result, _ = corpus_run
    assert result.returncode == 0, result.stderr
    for label, value in (("failures", 4), ("empty identity folders", 1), ("fallbacks (whole image)", 1)):
        line = next(line for line in result.stdout.splitlines() if label in line)
        assert line.split()[-2] == str(value), line


def test_corpus_records(corpus_run):
    _, cache_path = corpus_run
    with open_cache(cache_path) as cache:
        records = {path: i for i, path in enumerate(cache.paths)}
        reasons = {f.path: f.reason for f in cache.failures}
        expected_faces = {
            "Upper_Case/face_0001.JPG",
            "Upper_Case/face_0002.PNG",
            "Other_Formats/face.bmp",
            "Other_Formats/face.webp",
            "Cmyk/cmyk.jpg",
            "Sixteen_Bit/grey16.png",
            "Alpha/rgba.png",
            "Palette/palette.png",
            "Exif/rotated.jpg",
            "Exif/upright.jpg",
            f"{UNICODE_ID}/{UNICODE_FILE}",
        }
        assert set(records) == expected_faces | {"No_Face/grey.png"}
        assert all(cache.detected[records[p]] for p in expected_faces)
        fallback = records["No_Face/grey.png"]
        assert not cache.detected[fallback] and math.isnan(cache.scores[fallback])
        assert np.isnan(cache.boxes[fallback]).all()
        assert cache.identities == sorted({p.split("/")[0] for p in records})
        assert "truncated" in reasons["Broken/truncated.jpg"]
        assert "empty file" in reasons["Broken/zero.jpg"]
        assert "not an image" in reasons["Broken/text.jpg"]
        assert "too large" in reasons["Broken/bomb.png"]
        assert set(reasons) == {
            "Broken/truncated.jpg",
            "Broken/zero.jpg",
            "Broken/text.jpg",
            "Broken/bomb.png",
        }

        faces = cache.read_faces([records["Exif/rotated.jpg"], records["Exif/upright.jpg"]]).astype(np.int16)
        upright_diff = np.abs(faces[0] - faces[1]).mean()
        turned_diff = np.abs(np.rot90(faces[0]) - faces[1]).mean()
        assert upright_diff < 6 < turned_diff, (upright_diff, turned_diff)
        np.testing.assert_allclose(
            cache.boxes[records["Exif/rotated.jpg"]], cache.boxes[records["Exif/upright.jpg"]], atol=4
        )


def test_sixteen_bit_png_is_scaled_not_clipped(corpus):
    root, face = corpus
    rgb = read_image(root / "Sixteen_Bit" / "grey16.png", 10**8)
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    assert rgb.dtype == np.uint8 and rgb.shape == (*grey.shape, 3)
    assert np.abs(rgb[:, :, 0].astype(int) - grey).max() <= 1
    assert (rgb[:, :, 0] == rgb[:, :, 2]).all()


def test_sixteen_bit_colour_png(corpus, tmp_path: Path):
    _, face = corpus
    path = tmp_path / "colour16.png"
    cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    rgb = read_image(path, 10**8)
    assert rgb.dtype == np.uint8 and np.abs(rgb.astype(int) - face).max() <= 1


def test_alpha_is_composited_over_white_and_cmyk_palette_convert(corpus):
    root, face = corpus
    rgba = read_image(root / "Alpha" / "rgba.png", 10**8)
    assert (rgba[:40, :40] == 255).all() and np.array_equal(rgba[40:, 40:], face[40:, 40:])
    for rel in ("Cmyk/cmyk.jpg", "Palette/palette.png"):
        rgb = read_image(root / rel, 10**8)
        assert rgb.shape == face.shape and np.abs(rgb.astype(int) - face).mean() < 8, rel


def test_bomb_guard_reads_only_the_header(corpus):
    root, face = corpus
    with pytest.raises(ImageDecodeError, match="too large"):
        read_image(root / "Broken" / "bomb.png", 50_000_000)
    data = (root / "Upper_Case" / "face_0002.PNG").read_bytes()
    with pytest.raises(ImageDecodeError, match=r"250x250 = 62500 pixels exceeds max_pixels=62499"):
        decode_image(data, 62_499)
    assert decode_image(data, 62_500).shape == face.shape


def test_scan_sorted_case_insensitive_and_empty(corpus):
    root, _ = corpus
    scan = scan_images(root)
    paths = [e.path for e in scan.images]
    assert paths == sorted(paths) and len(paths) == 16
    assert "Upper_Case/face_0002.PNG" in paths and "Nobody/notes.txt" not in paths
    assert scan.empty_identities == ["Nobody"]
    entry = next(e for e in scan.images if e.path == "Broken/zero.jpg")
    st = (root / entry.path).stat()
    assert (entry.identity, entry.size, entry.mtime_ns) == ("Broken", 0, st.st_mtime_ns)


def test_scan_reports_symlink_loops_and_bad_names(tmp_path: Path):
    root = tmp_path / "data"
    (root / "Person" / "deeper").mkdir(parents=True)
    (root / "Person" / "a.jpg").write_bytes(b"1")
    (root / "Person" / "deeper" / "b.jpeg").write_bytes(b"22")
    (root / "Person" / "deeper" / "loop").symlink_to(root / "Person", target_is_directory=True)
    (root / "Self").symlink_to(root / "Self")
    os.mkdir(os.fsencode(root / "Person") + b"/bad\xffname")
    (Path(os.fsdecode(os.fsencode(root / "Person") + b"/bad\xffname")) / "c.jpg").write_bytes(b"3")
    scan = scan_images(root)
    assert [(e.path, e.identity, e.size) for e in scan.images] == [
        ("Person/a.jpg", "Person", 1),
        ("Person/deeper/b.jpeg", "Person", 2),
    ]
    problems = {p.path: p.reason for p in scan.problems}
    assert "symlink loop" in problems["Person/deeper/loop"]
    assert "symlink loop" in problems["Self"]
    assert any("not valid UTF-8" in reason for reason in problems.values())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_scan_reports_unreadable_folder(tmp_path: Path):
    locked = tmp_path / "data" / "Locked"
    locked.mkdir(parents=True)
    (tmp_path / "data" / "Open").mkdir()
    (tmp_path / "data" / "Open" / "x.png").write_bytes(b"1")
    locked.chmod(0)
    try:
        scan = scan_images(tmp_path / "data")
    finally:
        locked.chmod(0o755)
    assert [p.path for p in scan.problems] == ["Locked"] and "cannot read folder" in scan.problems[0].reason
    assert [e.path for e in scan.images] == ["Open/x.png"]


def test_missing_data_dir_is_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError, match="data directory not found"):
        scan_images(tmp_path / "nope")


def test_resume_refuses_other_crop_settings(corpus, corpus_run):
    root, _ = corpus
    _, cache_path = corpus_run
    with pytest.raises(UsageError, match=r"margin 0\.2 \(cache\) vs 0\.3 \(this run\)"):
        detect_directory(root, cache_path, DetectConfig(margin=0.3))
    summary = detect_directory(root, cache_path, DetectConfig(workers=1))
    # a rerun skips every face and retries the 4 failures (issue 13: failures are retried on every rerun)
    assert (summary.images, summary.skipped, summary.processed, summary.retried) == (16, 12, 4, 4)
    assert summary.failures == 4 and not summary.removed
