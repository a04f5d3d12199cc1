"""Shared pieces of the reliability suite: small real inputs and the one-line-error assertion."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from cache_helpers import centre_crop, lfw_files, some_identities

from facetool.cache import CacheWriter, FaceRecord
from facetool.models import build_backbone
from facetool.models.checkpoint import make_checkpoint, save_checkpoint

IMAGE_SIZE = 80
EMBEDDING_DIM = 16


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The command failed with `code`, and stderr is exactly one line, naming each needle, with no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one stderr line, got:\n{result.stderr}"
    assert lines[0].startswith("error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def write_small_cache(lfw_dir: Path, path: Path, identities: int = 4, per_identity: int = 3) -> Path:
    """A real cache of LFW centre crops: `identities` people with at least `per_identity` images."""
    names = some_identities(lfw_dir, identities, min_images=per_identity)
    files = [f for name in names for f in lfw_files(lfw_dir, [name])[:per_identity]]
    with CacheWriter(path, image_size=IMAGE_SIZE, encoding="jpeg", meta={"source": "reliability"}) as writer:
        for file in files:
            stat = file.stat()
            face = centre_crop(file, IMAGE_SIZE)
            rel = file.relative_to(lfw_dir).as_posix()
            writer.add(FaceRecord(rel, file.parent.name, stat.st_size, stat.st_mtime_ns, face, None, float("nan"),
                                  False))  # fmt: skip
        writer.commit()
    return path


def write_small_pairs(lfw_dir: Path, path: Path) -> Path:
    """A two-fold pairs file over the images `write_small_cache` stores (defaults)."""
    a, b, c, d = some_identities(lfw_dir, 4, min_images=3)
    rows = ["2\t1", f"{a}\t1\t2", f"{a}\t3\t{b}\t1", f"{c}\t1\t3", f"{c}\t2\t{d}\t2"]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_small_checkpoint(path: Path) -> Path:
    """A genuine facetool checkpoint of an untrained small-output InceptionResnetV1."""
    backbone = {"name": "inception_resnet_v1", "embedding_dim": EMBEDDING_DIM, "dropout": 0.0,
                "image_size": IMAGE_SIZE}  # fmt: skip
    model = build_backbone(**backbone, pretrained="none")
    save_checkpoint(
        make_checkpoint(model=model.state_dict(), backbone=backbone, config={}, epoch=0, history=[]), path
    )
    return path


class CreatesMarker:
    """Unpickling this object opens (and so creates) `marker`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Files that would run code when unpickled: a torch.save archive (facetool markers and all) and a bare pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "hostile.pth"
    payload = make_checkpoint(model={"w": CreatesMarker(marker)}, backbone={}, config={}, epoch=1, history=[])
    torch.save(payload, archive)
    bare = folder / "hostile-bare.pth"
    bare.write_bytes(pickle.dumps({"model": CreatesMarker(marker)}, protocol=2))
    return {"archive": archive, "bare": bare}


def facetool(*args: object, wrapper: Sequence[str] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI as a subprocess (`python -m facetool`, optionally under a `wrapper` command such as setpriv),
    single-threaded so parallel suites do not fight over two cores."""
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [*wrapper, sys.executable, "-m", "facetool", *map(str, args)]
    with (
        tempfile.TemporaryDirectory() as cwd
    ):  # default output folders (runs/...) land here, not in the checkout
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
