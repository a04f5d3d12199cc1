"""`facetool verify` with photos that are not plain image files, or whose paths look like rich markup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def cli(*args: object, models: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "FACETOOL_MODELS": str(models)}
    return subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)  # fmt: skip


def faceless_photo(path: Path) -> Path:
    """A real PNG with no face in it (a grey ramp): verify uses it whole and prints a note naming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.linspace(40, 200, 120, dtype=np.uint8), (90, 1))
    assert cv2.imwrite(str(path), np.dstack([ramp, ramp, ramp]))
    return path


def test_a_fifo_as_a_photo_is_one_line_at_once(trained, with_threshold, ssd_dir, tmp_path):
    """It blocked forever, waiting for a writer."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    photo = next(trained.data_dir.glob("*/*.jpg"))
    done = cli("verify", with_threshold["safetensors"], photo, fifo, models=ssd_dir, timeout=120)
    assert done.returncode == 1 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: {fifo}: is a FIFO (named pipe), not a regular file"], done.stderr


def test_paths_that_look_like_markup_are_printed_literally(with_threshold, ssd_dir, tmp_path):
    """`[/]` in a path crashed the "no face found" note (a rich MarkupError, "internal error"), and
    `Wedding [final]/x.png` was printed as `Wedding /x.png`."""
    wedding = faceless_photo(tmp_path / "Wedding [final]" / "x.png")
    closing = faceless_photo(tmp_path / "a[" / "]b.png")
    assert "[/]" in str(closing)
    done = cli("verify", with_threshold["safetensors"], wedding, closing, models=ssd_dir)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 2, done.stdout
    assert notes[0].startswith(f"note: no face found in {wedding} (detector threshold")
    assert notes[1].startswith(f"note: no face found in {closing} (detector threshold")
