"""The embedded default: `facetool demo` runs the whole chain on synthetic data, with the real detector and model."""

import json
from pathlib import Path

from rich.console import Console

from facetool.cache import open_cache
from facetool.cli.demo import _summary
from facetool.config.demo import DemoConfig
from facetool.demo import counted, run_demo


def test_demo_runs_every_step_and_keeps_test_people_out_of_training(tmp_path: Path):
    config = DemoConfig(
        out=tmp_path / "demo",
        identities=12,
        images_per_identity=4,
        test_identities=4,
        pairs_per_fold=4,
        image_size=80,
        num_epochs=1,
        epoch_size=2,
        people_per_batch=4,
        images_per_person=3,
        batch_size=12,
        device="cpu",
    )
    said: list[str] = []
    result = run_demo(config, say=said.append)

    assert result.synthetic and result.detection.images == 48
    assert result.detection.faces + result.detection.fallbacks == 48
    assert result.training.epochs == 1 and result.training.last_checkpoint.is_file()
    with open_cache(tmp_path / "demo" / "train-faces.h5") as train_faces:
        assert len(train_faces.identities) == 8
        assert not set(train_faces.identities) & {f"Synthetic_Person_{i:03d}" for i in range(8, 12)}
    report = json.loads(result.report_path.read_text())
    assert report["num_pairs"] == 2 * 2 * 4
    assert result.trained is not None and 0.0 <= result.trained.accuracy <= 1.0
    assert any("left out" in line for line in said)
    assert "training inception_resnet_v1 for 1 epoch of 2 batches" in said
    console = Console(record=True, width=200)
    console.print(_summary(result))
    summary = console.export_text()
    assert "1 epoch in " in summary and "1 epochs" not in summary
    assert "48 images, " in summary


def test_demo_cli_rejects_a_missing_data_folder(facetool_cli, tmp_path: Path):
    result = facetool_cli("demo", "--data", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_counted_says_one_in_the_singular_and_more_in_the_plural():
    assert [counted(n, "epoch") for n in (0, 1, 5)] == ["0 epochs", "1 epoch", "5 epochs"]
    assert [counted(n, "batch", "batches") for n in (1, 2)] == ["1 batch", "2 batches"]
