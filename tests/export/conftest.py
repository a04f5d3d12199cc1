"""A tiny model trained for seconds on real LFW faces that the real SSD detector cropped, and its exports.

Twelve LFW people (whole identity folders linked, never copied) go through `detect_directory` at 64 px, a
test-cnn trains on that cache for a few epochs, and the exported files are made once per session.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.config.train import TrainConfig
from facetool.detection.runner import detect_directory
from facetool.models.export import export_model, face_crop_from_meta

CROP_SIZE = 64
PEOPLE = 12
MIN_IMAGES = 4


@dataclass(frozen=True)
class Trained:
    data_dir: Path
    cache: Path
    checkpoint: Path
    people: list[str]


def link_people(lfw_dir: Path, target: Path, count: int, min_images: int) -> list[str]:
    """Symlink the first `count` LFW identity folders (from "B") with at least `min_images` images."""
    target.mkdir(parents=True)
    chosen = []
    for folder in sorted(lfw_dir.iterdir()):
        if folder.name >= "B" and len(list(folder.glob("*.jpg"))) >= min_images:
            (target / folder.name).symlink_to(folder, target_is_directory=True)
            chosen.append(folder.name)
            if len(chosen) == count:
                break
    return chosen


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """On the shared 2-core machine one torch thread is faster and steadier than torch's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained(lfw_dir: Path, ssd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("export-train")
    people = link_people(lfw_dir, root / "data", PEOPLE, MIN_IMAGES)
    cache = root / "faces.h5"
    detect = DetectConfig(
        image_size=CROP_SIZE, encoding="raw", model_dir=ssd_dir, model_format="caffe", workers=1
    )
    detect_directory(root / "data", cache, detect)
    torch.manual_seed(0)
    config = TrainConfig.model_validate(
        {
            "data_dir": cache,
            "checkpoint_dir": root / "run",
            "backbone": "test-cnn",
            "image_size": 48,
            "embedding_dim": 16,
            "batch_size": 30,
            "epoch_size": 4,
            "num_epochs": 3,
            "people_per_batch": 8,
            "images_per_person": 4,
            "learning_rate": 0.01,
            "miner": "random",
            "device": "cpu",
            "threads": 1,
            "validation": {"fraction": 0.0},
            "checkpoint_every": 10,
        }
    )
    from facetool.training.loop import train

    result = train(config)
    return Trained(root / "data", cache, result.last_checkpoint, people)


@pytest.fixture(scope="session")
def cache_faces(trained: Trained) -> np.ndarray:
    """Every face of the training cache, (N, 64, 64, 3) uint8."""
    with open_cache(trained.cache) as cache:
        return cache.read_faces()


@pytest.fixture(scope="session")
def exported(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained model as .safetensors and .onnx, each with its card (crop settings from the cache)."""
    out = tmp_path_factory.mktemp("exported")
    with open_cache(trained.cache) as cache:
        crop = face_crop_from_meta(cache.meta, "face cache faces.h5")
    return {
        fmt: export_model(trained.checkpoint, out / f"model.{fmt}", face_crop=crop).path
        for fmt in ("safetensors", "onnx")
    }


def write_pairs(path: Path, people: list[str]) -> Path:
    """A View 2 pairs file of 2 folds x 3 pairs over `people` (matched: images 1 and 2)."""
    lines = ["2\t3"]
    for fold in range(2):
        lines += [f"{people[fold * 3 + k]}\t1\t2" for k in range(3)]
        for k in range(3):
            a, b = people[(6 + fold * 3 + k) % len(people)], people[(7 + fold * 3 + k) % len(people)]
            lines.append(f"{a}\t1\t{b}\t2")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def report(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.json of a real `facetool eval` run of the trained model on pairs of its cache."""
    out = tmp_path_factory.mktemp("eval")
    pairs = write_pairs(out / "pairs.txt", trained.people)
    args = ["eval", trained.checkpoint, "--data", trained.cache, "--pairs", pairs, "--out", out / "eval",
            "--device", "cpu"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out / "eval" / "report.json"


@pytest.fixture(scope="session")
def with_threshold(
    trained: Trained, report: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The trained model exported with the eval report, so its cards hold a threshold."""
    out = tmp_path_factory.mktemp("exported-report")
    with open_cache(trained.cache) as cache:
        crop = face_crop_from_meta(cache.meta, "face cache faces.h5")
    return {
        fmt: export_model(trained.checkpoint, out / f"model.{fmt}", face_crop=crop, report=report).path
        for fmt in ("safetensors", "onnx")
    }
