"""Training from an image folder (detection first) with validation on a pairs file, as `facetool eval` scores it."""

from __future__ import annotations

from pathlib import Path

import pytest

from facetool.cache import open_cache
from facetool.config.train import TrainConfig
from facetool.evaluation.run import evaluate_on_pairs
from facetool.models import load_embedding_model
from facetool.training.loop import train

PEOPLE = (
    "Abdullah_Gul",
    "Adrien_Brody",
    "Alejandro_Toledo",
    "Alvaro_Uribe",
    "Amelie_Mauresmo",
    "Andre_Agassi",
)


@pytest.fixture
def image_dir(lfw_dir: Path, tmp_path: Path) -> Path:
    """An LFW-style folder of links to 4 real images of each of six people, plus a one-image person."""
    root = tmp_path / "images"
    for name, count in [*((p, 4) for p in PEOPLE), ("AJ_Cook", 1)]:
        (root / name).mkdir(parents=True)
        for file in sorted((lfw_dir / name).glob("*.jpg"))[:count]:
            (root / name / file.name).symlink_to(file)
    return root


def write_pairs(path: Path) -> Path:
    lines = ["2\t3"]
    for fold in range(2):
        people = PEOPLE[3 * fold : 3 * fold + 3]
        lines += [f"{p}\t1\t{2 + fold}" for p in people]
        lines += [f"{people[i]}\t{1 + fold}\t{people[(i + 1) % 3]}\t3" for i in range(3)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_folder_input_and_pairs_file_validation_match_eval(image_dir, tmp_path):
    from facetool.config.detect import DetectConfig
    from facetool.detection.resolve import resolve_faces

    pairs = write_pairs(tmp_path / "pairs.txt")
    faces = resolve_faces(image_dir, tmp_path / "run" / "faces.h5", DetectConfig(image_size=48)).cache
    config = TrainConfig.model_validate(
        {
            "data_dir": faces,
            "checkpoint_dir": tmp_path / "run",
            "backbone": "test-cnn",
            "image_size": 48,
            "embedding_dim": 16,
            "batch_size": 12,
            "epoch_size": 2,
            "num_epochs": 2,
            "people_per_batch": 4,
            "images_per_person": 3,
            "device": "cpu",
            "validation": {"fraction": 0.0, "pairs_file": pairs},
        }
    )
    result = train(config)
    assert result.dropped_identities == 1 and result.train_identities == 6
    with open_cache(tmp_path / "run" / "faces.h5") as cache:
        assert len(cache) == 25 and cache.image_size == 48
        model, _ = load_embedding_model(result.last_checkpoint)
        report = evaluate_on_pairs(model, cache, pairs)
    last = result.history[-1]
    assert last["val_loss"] is None
    assert last["val_accuracy"] == pytest.approx(report.accuracy, abs=1e-9)
    assert last["val_accuracy_std"] == pytest.approx(report.accuracy_std, abs=1e-9)


def test_pairs_file_naming_missing_images_fails_before_training(small_cache, tmp_path):
    from facetool.errors import PairsError

    pairs = write_pairs(tmp_path / "pairs.txt")
    config = TrainConfig.model_validate(
        {
            "data_dir": small_cache,
            "checkpoint_dir": tmp_path / "run",
            "backbone": "test-cnn",
            "image_size": 48,
            "device": "cpu",
            "validation": {"fraction": 0.0, "pairs_file": pairs},
        }
    )
    with pytest.raises(PairsError, match="missing"):
        train(config)
    assert not (tmp_path / "run" / "last.pth").exists()


def test_train_command_detects_a_folder_into_the_run_folder_and_the_library_takes_a_cache(
    image_dir, tmp_path, facetool_cli
):
    from facetool.config.base import load_config
    from facetool.errors import UsageError

    run = tmp_path / "run"
    result = facetool_cli(
        "train", "--data", image_dir, "--checkpoint-dir", run, "--num-epochs", "1", "--batch-size", "12",
        "--people-per-batch", "4", "--images-per-person", "3", "--device", "cpu", "--set", "backbone=test-cnn",
        "--set", "image_size=48", "--set", "embedding_dim=16", "--set", "epoch_size=1",
        "--set", "validation.fraction=0.0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open_cache(run / "faces.h5") as cache:
        assert len(cache) == 25
    assert load_config(TrainConfig, run / "config.toml").data_dir == run / "faces.h5"
    config = TrainConfig.model_validate(
        {"data_dir": image_dir, "checkpoint_dir": tmp_path / "lib", "device": "cpu"}
    )
    with pytest.raises(UsageError, match=r"images: is an image folder; the trainer takes a face cache"):
        train(config)
    assert not (tmp_path / "lib").exists()
