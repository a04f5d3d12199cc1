"""A small real face cache for training tests: LFW images, centre-cropped and resized with OpenCV."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import build_lfw_cache


@pytest.fixture(scope="session")
def small_cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lfw_cache(lfw_dir, tmp_path_factory.mktemp("cache") / "faces.h5")
