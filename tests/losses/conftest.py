"""A small real face cache of LFW people for the loss training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cache_helpers import some_identities, write_people_cache


@pytest.fixture(scope="session")
def people_cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 LFW people with 6 images each, 48-pixel crops."""
    people = some_identities(lfw_dir, 8, min_images=6)
    return write_people_cache(lfw_dir, tmp_path_factory.mktemp("cache") / "faces.h5", people, 6, 48)
