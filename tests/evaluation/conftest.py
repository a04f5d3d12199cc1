"""Small real evaluation inputs: subsets of the LFW pairs files, a face cache of their images, a model.

The cache holds plain centre crops of the real LFW images at 80 px (no detector, and a quarter of the
network cost of 160 px, so these tests stay fast on two shared cores); the model is an untrained
InceptionResnetV1 whose batch-norm statistics were measured on those faces, so its embeddings spread out
(with the initial statistics every face maps to nearly the same point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facetool.cache import CacheWriter, FaceRecord, open_cache
from facetool.data.transforms import to_input
from facetool.evaluation.pairs import read_pairs
from facetool.models import build_backbone
from facetool.models.checkpoint import make_checkpoint, save_checkpoint

IMAGE_SIZE = 80
EMBEDDING_DIM = 64


def centre_crop(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """The central 150x150 of a 250x250 LFW image resized to `size`: RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    crop = cv2.resize(bgr[50:200, 50:200], (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def subset_view2(lines: list[str], folds: int, per_fold: int) -> str:
    """The first `per_fold` matched and mismatched pairs of each of the first `folds` folds of pairs.txt."""
    out = [f"{folds}\t{per_fold}"]
    for fold in range(folds):
        start = 1 + fold * 600
        out += lines[start : start + per_fold] + lines[start + 300 : start + 300 + per_fold]
    return "\n".join(out) + "\n"


def subset_view1(lines: list[str], count: int, total: int) -> str:
    """The first `count` matched and mismatched pairs of a View 1 file holding `total` of each."""
    return "\n".join([str(count), *lines[1 : 1 + count], *lines[1 + total : 1 + total + count]]) + "\n"


def cycled_view1(view2_text: str, count: int) -> str:
    """A View 1 file of `count` matched and mismatched pairs reusing the lines (and images) of a View 2 file."""
    rows = view2_text.splitlines()[1:]
    matched = [r for r in rows if len(r.split()) == 3]
    mismatched = [r for r in rows if len(r.split()) == 4]
    chosen = [matched[i % len(matched)] for i in range(count)]
    chosen += [mismatched[i % len(mismatched)] for i in range(count)]
    return "\n".join([str(count), *chosen]) + "\n"


@dataclass(frozen=True)
class PairsSet:
    folder: Path
    view2: Path
    dev_train: Path
    dev_test: Path

    @property
    def images(self) -> list[str]:
        files = (self.view2, self.dev_train, self.dev_test)
        return sorted(set().union(*(read_pairs(f).images for f in files)))


@pytest.fixture(scope="session")
def small_pairs(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> PairsSet:
    folder = tmp_path_factory.mktemp("pairs")
    lfw = shared / "lfw"
    view2 = folder / "view2-small.txt"
    view2.write_text(subset_view2((lfw / "pairs.txt").read_text().splitlines(), 2, 3))
    dev_train = folder / "devtrain-small.txt"
    dev_train.write_text(subset_view1((lfw / "pairsDevTrain.txt").read_text().splitlines(), 4, 1100))
    dev_test = folder / "devtest-small.txt"
    dev_test.write_text(cycled_view1(view2.read_text(), 10))
    return PairsSet(folder, view2, dev_train, dev_test)


@pytest.fixture(scope="session")
def pair_cache(small_pairs: PairsSet, lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face cache of every image of the small pairs files (paths relative to the LFW folder)."""
    path = tmp_path_factory.mktemp("cache") / "pairs-faces.h5"
    with CacheWriter(path, image_size=IMAGE_SIZE, meta={"data_dir": str(lfw_dir)}) as writer:
        for rel in small_pairs.images:
            st = (lfw_dir / rel).stat()
            face = centre_crop(lfw_dir / rel)
            writer.add(
                FaceRecord(rel, rel.split("/")[0], st.st_size, st.st_mtime_ns, face, None, math.nan, False)
            )
        writer.commit()
    return path


@pytest.fixture(scope="session")
def model(pair_cache: Path) -> torch.nn.Module:
    """Untrained InceptionResnetV1 (64-d, 80 px) with batch-norm statistics measured on the cached faces."""
    torch.manual_seed(0)
    net = build_backbone(embedding_dim=EMBEDDING_DIM, dropout=0.0, image_size=IMAGE_SIZE)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with open_cache(pair_cache) as cache:
        faces = cache.read_faces()
    net.train()
    with torch.no_grad():
        net(to_input(faces))
    return net.eval()


@pytest.fixture(scope="session")
def checkpoint(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`model` saved as a facetool checkpoint (the design's checkpoint contract)."""
    path = tmp_path_factory.mktemp("ckpt") / "untrained.pth"
    backbone = {
        "name": "inception_resnet_v1",
        "embedding_dim": EMBEDDING_DIM,
        "dropout": 0.0,
        "image_size": IMAGE_SIZE,
    }
    save_checkpoint(
        make_checkpoint(model=model.state_dict(), backbone=backbone, config={}, epoch=0, history=[]), path
    )
    return path


@pytest.fixture(scope="session")
def reference_embeddings(model: torch.nn.Module, pair_cache: Path) -> dict[str, np.ndarray]:
    """Every cached face embedded by one plain forward pass (no facetool code): path -> (D,) unit vector."""
    with open_cache(pair_cache) as cache, torch.no_grad():
        x = (torch.from_numpy(cache.read_faces()).permute(0, 3, 1, 2).float() - 127.5) / 128.0
        return dict(zip(cache.paths, model(x).numpy(), strict=True))
