"""atomic_copy: a finished file's copy made by a hard link (no second write), whole or absent, and on a file
system without links (another device) a real byte copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facetool.files import TEMP_SUFFIX, atomic_copy, atomic_write_bytes


def test_the_copy_shares_the_data_and_survives_the_sources_next_atomic_replace(tmp_path: Path) -> None:
    last, best = tmp_path / "last.pth", tmp_path / "best.pth"
    atomic_write_bytes(last, b"epoch 1")
    atomic_copy(last, best)
    assert best.read_bytes() == b"epoch 1"
    assert os.stat(best).st_ino == os.stat(last).st_ino, "a link, not a second write"
    atomic_write_bytes(last, b"epoch 2")
    assert best.read_bytes() == b"epoch 1", "replacing last.pth leaves the copy as it was"
    atomic_copy(last, best)
    assert best.read_bytes() == b"epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pth", "last.pth"]


def test_a_failed_copy_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    best = tmp_path / "best.pth"
    best.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "missing.pth", best)
    assert best.read_bytes() == b"previous"
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(Path.cwd()).st_dev,
    reason="needs /dev/shm on another file system than the working folder",
)
def test_across_file_systems_the_bytes_are_copied(tmp_path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        source = Path(other) / "last.pth"
        source.write_bytes(os.urandom(3 << 20))
        target = tmp_path / "best.pth"
        atomic_copy(source, target)
        assert target.read_bytes() == source.read_bytes()
        assert os.stat(target).st_ino != os.stat(source).st_ino
