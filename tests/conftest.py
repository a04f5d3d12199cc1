"""Shared fixtures: where the read-only shared data lives, and running the real `facetool` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def shared_dir() -> Path | None:
    """The folder named by FACETOOL_SHARED, or None when it is unset."""
    value = os.environ.get("FACETOOL_SHARED")
    return Path(value).resolve() if value else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder; tests that need it skip, with the reason, when FACETOOL_SHARED is unset."""
    path = shared_dir()
    if path is None:
        pytest.skip("FACETOOL_SHARED is not set: no LFW images or SSD detector to test with")
    if not (path / "lfw").is_dir():
        pytest.fail(f"FACETOOL_SHARED={path} has no lfw/ folder")
    return path


@pytest.fixture(scope="session")
def lfw_dir(shared: Path) -> Path:
    return shared / "lfw" / "lfw-deepfunneled"


@pytest.fixture(scope="session")
def ssd_dir(shared: Path) -> Path:
    return shared / "models" / "ssd-res10"


def run_facetool(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the installed CLI in a real subprocess (`python -m facetool`) and capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "facetool", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def facetool_cli():
    """The `run_facetool` function, as a fixture."""
    return run_facetool
