"""A small real face cache for training tests: LFW images, centre-cropped and resized with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetool.cache import CacheWriter, FaceRecord

SIZE = 96


def build_lfw_cache(
    lfw_dir: Path, path: Path, *, identities: int = 10, per_identity: int = 6, singles: int = 1
) -> Path:
    """Write a cache of `identities` LFW people with >= 4 images (plus `singles` one-image people)."""
    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())
    counts = {name: len(list((lfw_dir / name).glob("*.jpg"))) for name in names[:400]}
    many = [n for n in names[:400] if counts[n] >= 4][:identities]
    one = [n for n in names[:400] if counts[n] == 1][:singles]
    with CacheWriter(path, image_size=SIZE, encoding="jpeg", meta={"source": "tests"}) as writer:
        for name in many + one:
            for file in sorted((lfw_dir / name).glob("*.jpg"))[:per_identity]:
                image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
                face = cv2.resize(image[50:200, 50:200], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                stat = file.stat()
                writer.add(
                    FaceRecord(
                        path=f"{name}/{file.name}",
                        identity=name,
                        size=stat.st_size,
                        mtime_ns=stat.st_mtime_ns,
                        face=np.ascontiguousarray(face),
                        box=None,
                        score=float("nan"),
                        detected=False,
                    )
                )
        writer.commit()
    return path


@pytest.fixture(scope="session")
def small_cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lfw_cache(lfw_dir, tmp_path_factory.mktemp("cache") / "faces.h5")


TINY_NET = '''
"""A small CNN backbone installed as a facetool.backbones plugin for fast CPU training tests."""

import torch.nn.functional as F
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, embedding_dim, dropout):
        super().__init__()
        layers = []
        for cin, cout in ((3, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.embed = nn.Linear(64, embedding_dim)

    def forward(self, x):
        return F.normalize(self.embed(self.features(x)), dim=1)


def build(*, embedding_dim=512, dropout=0.6, pretrained="none", image_size=160):
    return TinyNet(embedding_dim, dropout)
'''


def install_tiny_backbone(site: Path) -> Path:
    """Install (by files on a path entry, as pip would) a distribution registering backbone `test-tiny`."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "facetool_test_tinynet.py").write_text(TINY_NET, encoding="utf-8")
    info = site / "facetool_test_tinynet-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: facetool-test-tinynet\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[facetool.backbones]\ntest-tiny = facetool_test_tinynet:build\n")
    return site


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Make `test-tiny` available here and in subprocesses; returns the environment for subprocesses."""
    import os
    import sys

    from facetool.plugins import clear_cache

    site = install_tiny_backbone(tmp_path_factory.mktemp("site"))
    sys.path.insert(0, str(site))
    clear_cache()
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    yield {"PYTHONPATH": pythonpath}
    sys.path.remove(str(site))
    clear_cache()
