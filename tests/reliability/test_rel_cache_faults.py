"""Damaged face caches: every command that reads one stops with one line naming the file, and nothing is written."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import facetool_in_process
from reliability_helpers import (
    assert_one_line_error,
    facetool,
    write_small_cache,
    write_small_checkpoint,
    write_small_pairs,
)


def _truncated(good: bytes, path: Path) -> None:
    path.write_bytes(good[: len(good) // 2])


def _other_version(good: bytes, path: Path) -> None:
    path.write_bytes(good)
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = 99


def _not_a_cache(good: bytes, path: Path) -> None:
    with h5py.File(path, "w") as h5:
        h5["embeddings"] = np.zeros((3, 4), np.float32)


def _external_storage(good: bytes, path: Path) -> None:
    """The JPEG bytes stored outside the file, in /etc/passwd: copying them would leak that file."""
    path.write_bytes(good)
    with h5py.File(path, "r+") as h5:
        n = h5["faces/jpeg"].shape[0]
        del h5["faces/jpeg"]
        h5["faces"].create_dataset("jpeg", (n,), np.uint8, external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)])


def _external_link(good: bytes, path: Path) -> None:
    other = path.with_name("other.h5")
    other.write_bytes(good)
    path.write_bytes(good)
    with h5py.File(path, "r+") as h5:
        del h5["faces/path"]
        h5["faces/path"] = h5py.ExternalLink(str(other), "/faces/path")


def _virtual(good: bytes, path: Path) -> None:
    other = path.with_name("other.h5")
    other.write_bytes(good)
    path.write_bytes(good)
    with h5py.File(path, "r+") as h5:
        n = h5["faces/label"].shape[0]
        del h5["faces/label"]
        layout = h5py.VirtualLayout((n,), np.int64)
        layout[:] = h5py.VirtualSource(str(other), "/faces/label", (n,))
        h5["faces"].create_virtual_dataset("label", layout)


FAULTS: dict[str, tuple[Callable[[bytes, Path], None], str]] = {
    "truncated": (_truncated, "truncated"),
    "other-version": (_other_version, "version 99"),
    "not-a-cache": (_not_a_cache, "not a facetool face cache"),
    "external-storage": (_external_storage, "external storage"),
    "external-link": (_external_link, "external link"),
    "virtual-dataset": (_virtual, "virtual dataset"),
}

COMMANDS: dict[str, Callable[[Path, Path, Path], tuple]] = {
    "stats": lambda bad, good, tmp: ("dataset", "stats", bad),
    "filter": lambda bad, good, tmp: ("dataset", "filter", bad, "-o", tmp / "out.h5"),
    "merge": lambda bad, good, tmp: ("dataset", "merge", good, bad, "-o", tmp / "out.h5"),
    "train": lambda bad, good, tmp: (
        "train",
        "--data",
        bad,
        "--checkpoint-dir",
        tmp / "run",
        "--device",
        "cpu",
    ),
    "eval": lambda bad, good, tmp: (
        "eval",
        tmp / "model.pth",
        "--data",
        bad,
        "--pairs",
        tmp / "pairs.txt",
        "--out",
        tmp / "out",
        "--device",
        "cpu",
    ),
    "embed": lambda bad, good, tmp: (
        "embed",
        tmp / "model.pth",
        bad,
        "-o",
        tmp / "out.npz",
        "--device",
        "cpu",
    ),
}


@pytest.fixture(scope="module")
def inputs(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good cache, a real checkpoint and a pairs file over the cache, shared by the module."""
    folder = tmp_path_factory.mktemp("cache-faults")
    write_small_cache(lfw_dir, folder / "good.h5")
    write_small_checkpoint(folder / "model.pth")
    write_small_pairs(lfw_dir, folder / "pairs.txt")
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check(run: Callable[..., object], command: str, fault: str, inputs: Path, tmp_path: Path) -> None:
    for name in ("model.pth", "pairs.txt"):
        (tmp_path / name).symlink_to(inputs / name)
    good = inputs / "good.h5"
    bad = tmp_path / f"{fault}.h5"
    make, words = FAULTS[fault]
    make(good.read_bytes(), bad)
    before = _digest(bad)
    result = run(*COMMANDS[command](bad, good, tmp_path))
    assert_one_line_error(result, 1, str(bad), words)
    assert _digest(bad) == before
    assert not any((tmp_path / out).exists() for out in ("out.h5", "out.npz", "out/report.json"))
    assert not (tmp_path / "run" / "last.pth").exists()


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_damaged_cache_is_named_in_one_line(command: str, fault: str, inputs: Path, tmp_path: Path) -> None:
    """The whole matrix through the CLI entry point, in-process (the subprocess cost would be 18 start-ups)."""
    _check(facetool_in_process, command, fault, inputs, tmp_path)


@pytest.mark.parametrize(
    ("command", "fault"),
    [(command, sorted(FAULTS)[i % len(FAULTS)]) for i, command in enumerate(sorted(COMMANDS))],
)
def test_damaged_cache_in_a_real_subprocess(command: str, fault: str, inputs: Path, tmp_path: Path) -> None:
    """Each command once as a real `facetool` process, the faults taken in turn."""
    _check(facetool, command, fault, inputs, tmp_path)


def test_detect_refuses_to_append_to_a_damaged_cache(inputs: Path, lfw_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data" / "Someone"
    data.mkdir(parents=True)
    (data / "a.jpg").symlink_to(next((lfw_dir / "Aaron_Peirsol").glob("*.jpg")))
    bad = tmp_path / "faces.h5"
    _truncated((inputs / "good.h5").read_bytes(), bad)
    before = _digest(bad)
    result = facetool("detect", tmp_path / "data", "-o", bad, "-j", "1", "--no-progress")
    assert_one_line_error(result, 1, str(bad))
    assert _digest(bad) == before
