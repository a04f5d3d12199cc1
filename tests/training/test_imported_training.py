"""Training from a RecordIO set that was exported from a cache and imported back gives the same model as
training from the cache itself: same faces byte for byte, same classes in the same order."""

from __future__ import annotations

from pathlib import Path

import torch

from facetool.config.train import TrainConfig
from facetool.formats.exporting import export_recordio
from facetool.formats.importing import import_recordio
from facetool.models.checkpoint import load_checkpoint
from facetool.training.loop import train


def tiny(cache: Path, run_dir: Path) -> TrainConfig:
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "tiny-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 3, "num_epochs": 2, "people_per_batch": 6,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1, "seed": 7,
        "validation": {"fraction": 0.0},
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


def test_training_from_an_imported_rec_matches_training_from_the_cache(
    small_cache: Path, tmp_path: Path
) -> None:
    (tmp_path / "rec").mkdir()
    export_recordio(small_cache, tmp_path / "rec")
    import_recordio(tmp_path / "rec", tmp_path / "imported.h5")
    train(tiny(small_cache, tmp_path / "a"))
    train(tiny(tmp_path / "imported.h5", tmp_path / "b"))
    a, b = load_checkpoint(tmp_path / "a" / "last.pth"), load_checkpoint(tmp_path / "b" / "last.pth")
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
