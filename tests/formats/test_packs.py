"""Verification packs: the reference packs and the real insightface pack read; a crafted pack runs nothing."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from facetool.formats.packs import PackError, read_pack, write_pack


def test_reference_packs_read_to_the_manifest(formats_dir: Path, manifest: dict) -> None:
    expected = manifest["packs"]
    for name in expected["files"]:
        pack = read_pack(formats_dir / "packs" / name)
        assert [hashlib.sha256(image).hexdigest() for image in pack.images] == expected["image_sha256"], name
        assert pack.issame.tolist() == expected["issame"], name


def test_python2_pack_needs_bytes_encoding(formats_dir: Path) -> None:
    path = formats_dir / "packs" / "devtest50-py2.bin"
    with path.open("rb") as handle, pytest.raises(UnicodeDecodeError):
        pickle.load(handle)  # what a plain load does: the reason for encoding="bytes"
    assert len(read_pack(path)) == 50


def test_the_real_insightface_pack_reads(formats_dir: Path) -> None:
    pack = read_pack(formats_dir / "real" / "insightface" / "small_lfw.bin")
    assert len(pack) == 10 and pack.issame.all()
    assert all(image[:3] == b"\xff\xd8\xff" for image in pack.images)


class _Command:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pack_is_refused_and_its_command_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    crafted = tmp_path / "lfw.bin"
    crafted.write_bytes(pickle.dumps(([_Command(marker), b"x"], [True])))
    probe = tmp_path / "probe"
    probe.write_bytes(pickle.dumps(_Command(probe)))
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.load(open({str(probe)!r}, 'rb'))"], check=True
    )
    assert probe.exists()  # the pickle does run its command when loaded plainly
    with pytest.raises(
        PackError, match=r"lfw\.bin: refusing to load: the pickle asks for (posix|os)\.system"
    ):
        read_pack(crafted)
    assert not marker.exists()


def test_a_crafted_pack_is_refused_by_the_cli(tmp_path: Path, facetool_cli) -> None:
    marker = tmp_path / "ran"
    crafted = tmp_path / "lfw.bin"
    crafted.write_bytes(pickle.dumps(([_Command(marker), b"x"], [True])))
    result = facetool_cli("dataset", "import", str(crafted), "-o", str(tmp_path / "faces.h5"))
    assert result.returncode == 1
    assert "refusing to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "faces.h5").exists()


def test_write_pack_reads_back(tmp_path: Path) -> None:
    write_pack(tmp_path / "p.bin", [b"a", b"b", b"c", b"d"], [True, False])
    pack = read_pack(tmp_path / "p.bin")
    assert pack.images == [b"a", b"b", b"c", b"d"] and pack.issame.tolist() == [True, False]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps([b"a"]), "expected a pickled"),
        (pickle.dumps(([b"a"], [True])), "1 pairs need 2 images"),
        (pickle.dumps(([1, 2], [True])), "image 0: not encoded image bytes"),
        (b"not a pickle", "not a verification pack"),
    ],
)
def test_malformed_packs_are_one_line_errors(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(payload)
    with pytest.raises(PackError, match=message) as info:
        read_pack(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
