"""The reference files of the field's formats (written by MXNet 1.9.1, and two real files): where they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def formats_dir(shared: Path) -> Path:
    path = shared / "formats"
    if not (path / "manifest.json").is_file():
        pytest.fail(f"{path} has no manifest.json (FACETOOL_SHARED has no reference format files)")
    return path


@pytest.fixture(scope="session")
def manifest(formats_dir: Path) -> dict[str, Any]:
    return json.loads((formats_dir / "manifest.json").read_text(encoding="utf-8"))
