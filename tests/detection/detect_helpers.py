"""Helpers shared by the detection tests (importable; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

KNOWN_IMAGES = (
    "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0003.jpg",
    "Angelina_Jolie/Angelina_Jolie_0004.jpg",
    "George_W_Bush/George_W_Bush_0010.jpg",
)


def link_lfw_subset(lfw_dir: Path, target: Path, prefix: str, min_images: int) -> int:
    """Symlink whole identity folders whose names start with `prefix` until `min_images` images are linked."""
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for folder in sorted(lfw_dir.iterdir()):
        if count >= min_images:
            break
        if folder.name.startswith(prefix):
            (target / folder.name).symlink_to(folder, target_is_directory=True)
            count += len(list(folder.glob("*.jpg")))
    return count


def lfw_rgb(lfw_dir: Path, rel: str) -> np.ndarray:
    """An LFW image as RGB uint8, decoded by OpenCV (independently of facetool's decoder)."""
    return cv2.cvtColor(cv2.imread(os.fspath(lfw_dir / rel), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def facetool_command(*args: object) -> list[str]:
    """The argv of a real `python -m facetool` subprocess."""
    return [sys.executable, "-m", "facetool", *map(str, args)]


def run_cli(*args: object, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `facetool` in a real subprocess with a wide terminal, capturing its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        facetool_command(*args), env=full_env, capture_output=True, text=True, timeout=timeout
    )
