"""Fixtures for detection tests: real LFW subsets (linked, never copied into the repo) and the SSD files."""

from __future__ import annotations

from pathlib import Path

import pytest
from detect_helpers import link_lfw_subset

from facetool.detection.model_files import ModelFiles


@pytest.fixture(scope="session")
def tf_files(ssd_dir: Path) -> ModelFiles:
    return ModelFiles(
        "tensorflow",
        ssd_dir / "opencv_face_detector_uint8.pb",
        ssd_dir / "opencv_face_detector.pbtxt",
        "test",
    )


@pytest.fixture(scope="session")
def caffe_files(ssd_dir: Path) -> ModelFiles:
    return ModelFiles(
        "caffe", ssd_dir / "res10_300x300_ssd_iter_140000.caffemodel", ssd_dir / "deploy.prototxt", "test"
    )


@pytest.fixture(scope="session")
def lfw_a_dir(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """About 300 LFW images: the first identities whose names start with "A" (folders linked)."""
    root = tmp_path_factory.mktemp("lfw_a") / "data"
    return root, link_lfw_subset(lfw_dir, root, "A", 300)
