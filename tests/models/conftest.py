"""Shared fixtures: random weights written in facenet-pytorch's own file format, and real LFW faces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1
from PIL import Image

VGGFACE2_CLASSES = 8631


@pytest.fixture(scope="session")
def facenet_state() -> dict[str, torch.Tensor]:
    """A state dict shaped like facenet-pytorch's vggface2 file (including the logits layer), random values."""
    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=VGGFACE2_CLASSES)
    with torch.no_grad():
        net.last_bn.running_mean.normal_()
        net.last_bn.running_var.uniform_(0.5, 2.0)
    return net.state_dict()


@pytest.fixture(scope="session")
def facenet_file(tmp_path_factory: pytest.TempPathFactory, facenet_state: dict[str, torch.Tensor]) -> Path:
    """The random weights saved with torch.save, as facenet-pytorch's release files are."""
    path = tmp_path_factory.mktemp("weights") / "facenet-random.pt"
    torch.save(facenet_state, path)
    return path


@pytest.fixture(scope="session")
def lfw_faces() -> np.ndarray:
    """Four real LFW images (two people), centre-cropped to 160x160, uint8 RGB."""
    shared = os.environ.get("FACETOOL_SHARED")
    if not shared:
        pytest.skip("FACETOOL_SHARED is not set: real LFW images unavailable")
    root = Path(shared) / "lfw" / "lfw-deepfunneled"
    files = [
        root / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg",
        root / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg",
        root / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg",
        root / "Abdullah_Gul" / "Abdullah_Gul_0002.jpg",
    ]
    return np.stack([np.asarray(Image.open(f).convert("RGB"))[45:205, 45:205] for f in files])


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """On the shared 2-core CI machine torch's thread pool mostly waits; one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
