"""Bad image files in the data directory: `facetool detect` reports and skips each one and processes the rest.

The bad-file corpus (truncated, zero-byte, non-image bytes, 16-bit, CMYK, palette, alpha...) is exercised by
tests/detection/test_detect_files.py; this module adds decompression-bomb headers, wrong extensions, symlink loops
and files the process has no permission to read.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import pytest
from reliability_helpers import facetool

from facetool.cache import open_cache

DROP_READ_BYPASS = [
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def png_header_only(width: int, height: int) -> bytes:
    """A valid-looking PNG declaring width x height RGB but holding a few hundred bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def permission_wrapper() -> list[str] | None:
    """How to run a process that cannot read a mode-000 file: as non-root, nothing; as root, `setpriv` without
    the capabilities that let root ignore file modes; None when neither is possible here."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, *DROP_READ_BYPASS] if setpriv else None


@pytest.fixture
def bad_dir(tmp_path: Path, lfw_dir: Path) -> Path:
    src = sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))
    root = tmp_path / "data"
    alice, bob = root / "Alice", root / "Bob"
    alice.mkdir(parents=True)
    bob.mkdir()
    shutil.copy(src[0], alice / "good.jpg")
    shutil.copy(src[1], bob / "good.jpg")
    (alice / "bomb20000.png").write_bytes(png_header_only(20000, 20000))
    (alice / "bomb10000.png").write_bytes(png_header_only(10000, 10000))
    image = cv2.imread(str(src[2]))
    assert cv2.imwrite(str(tmp_path / "png.png"), image) and cv2.imwrite(str(tmp_path / "jpeg.jpg"), image)
    (tmp_path / "png.png").rename(alice / "png_named.jpg")
    (tmp_path / "jpeg.jpg").rename(bob / "jpeg_named.png")
    (alice / "self.jpg").symlink_to("self.jpg")
    (bob / "parent").symlink_to("..")
    (root / "Root").symlink_to(".")
    shutil.copy(src[3], bob / "locked.jpg")
    (bob / "locked.jpg").chmod(0)
    return root


def test_detect_reports_and_skips_each_bad_file(bad_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    wrapper = permission_wrapper()
    if wrapper is None:
        pytest.skip("running as root without setpriv: a mode-000 file stays readable, so it cannot be tested")
    out = tmp_path / "faces.h5"
    args = ["detect", bad_dir, "-o", out, "--model-dir", ssd_dir, "-j", "2", "--no-progress"]
    result = facetool(*args, wrapper=wrapper)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    with open_cache(out) as cache:
        reasons = {f.path: f.reason for f in cache.failures}
        assert sorted(cache.paths) == [
            "Alice/good.jpg",
            "Alice/png_named.jpg",
            "Bob/good.jpg",
            "Bob/jpeg_named.png",
        ]
        assert cache.detected.all()
        assert cache.read_faces().shape == (4, 160, 160, 3)
    assert set(reasons) == {"Alice/bomb20000.png", "Alice/bomb10000.png", "Alice/self.jpg", "Bob/locked.jpg",
                            "Bob/parent", "Root"}  # fmt: skip
    assert "too large" in reasons["Alice/bomb20000.png"] and "too large" in reasons["Alice/bomb10000.png"]
    assert (
        "symlink" in reasons["Alice/self.jpg"]
        and "loop" in reasons["Bob/parent"]
        and "loop" in reasons["Root"]
    )
    assert "Permission denied" in reasons["Bob/locked.jpg"]
    for path in reasons:  # scan problems and images that failed to decode alike
        assert f"skipped {path}:" in result.stdout + result.stderr, f"{path} not reported"
    assert re.search(r"failures\s*│\s*3 ", result.stdout), result.stdout


_READ_ONE = (
    "import sys\n"
    "from facetool.detection.images import ImageDecodeError, read_image\n"
    "try:\n"
    "    read_image(sys.argv[1], int(sys.argv[2]))\n"
    "except ImageDecodeError as exc:\n"
    "    print(exc)\n"
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def read_image_bounded(path: Path | str, max_pixels: int = 50_000_000) -> str:
    """The reason `read_image` refuses `path`, from a child with 2 GiB of address space and 60 s: an unbounded
    read (what this guards against) then fails the test instead of exhausting the machine."""
    done = subprocess.run(
        [sys.executable, "-c", _READ_ONE, str(path), str(max_pixels)],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_photos_that_are_not_regular_files_or_too_large_are_refused_unread(tmp_path: Path) -> None:
    """`/dev/zero` was read without limit and a FIFO blocked forever; every photo facetool reads (verify,
    embed, detect, eval) goes through `read_image`."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    linked = tmp_path / "zero.jpg"
    linked.symlink_to("/dev/zero")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:  # sparse: 80 MiB that cost no disk
        handle.truncate(80 * 2**20)
    assert read_image_bounded("/dev/zero") == "is a character device, not a regular file"
    assert read_image_bounded(linked) == "is a character device, not a regular file"
    assert read_image_bounded(fifo) == "is a FIFO (named pipe), not a regular file"
    assert read_image_bounded(huge, max_pixels=1000) == (
        "image file is larger than 67,116,864 bytes; refusing to read it"
    )
