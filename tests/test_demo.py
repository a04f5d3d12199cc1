"""The embedded default: `facetool demo` runs the whole chain on synthetic data, with the real detector and model."""

import json
from pathlib import Path

import pytest
from rich.console import Console

from facetool.cache import open_cache
from facetool.cli.demo import _summary
from facetool.config.base import build_config
from facetool.config.demo import DemoConfig
from facetool.demo import counted, run_demo
from facetool.errors import PluginError


def test_demo_runs_every_step_and_keeps_test_people_out_of_training(tmp_path: Path):
    config = DemoConfig(
        out=tmp_path / "demo",
        identities=12,
        images_per_identity=4,
        test_identities=4,
        folds=2,
        pairs_per_fold=4,
        backbone="test-cnn",
        loss="triplet",
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
    assert "training test-cnn with the triplet loss for 1 epoch of 2 batches" in said
    console = Console(record=True, width=200)
    console.print(_summary(result))
    summary = console.export_text()
    assert "1 epoch in " in summary and "1 epochs" not in summary
    assert "48 images, " in summary
    assert str(result.training.run_dir / "loss.png") in summary
    assert "facetool protocol" in summary


@pytest.mark.extras
def test_the_default_demo_trains_a_network_far_better_than_untrained(tmp_path: Path):
    """The promise of `facetool demo` as a fresh clone runs it: every default, held-out pairs above 0.90."""
    result = run_demo(DemoConfig(out=tmp_path / "demo", device="cpu"))

    assert result.trained.num_pairs == 400
    assert result.trained.accuracy >= 0.90
    assert result.untrained.accuracy <= 0.75
    with open_cache(tmp_path / "demo" / "train-faces.h5") as train_faces:
        assert len(train_faces.identities) == 160


def test_a_missing_plugin_is_named_before_any_work(tmp_path: Path):
    config = build_config(DemoConfig, None, [f"out={tmp_path / 'demo'}", "backbone=nonesuch"])
    with pytest.raises(PluginError, match="unknown backbone 'nonesuch'"):
        run_demo(config)
    assert not (tmp_path / "demo").exists()


def test_a_setting_of_the_default_loss_keeps_its_name():
    config = build_config(DemoConfig, None, ["loss.margin=soft", "backbone.head=avg"])
    assert (config.loss.name, config.loss.settings) == ("batch-hard", {"margin": "soft"})
    assert (config.backbone.name, config.backbone.settings) == ("tiny-cnn", {"head": "avg"})
    assert build_config(DemoConfig, None, ["loss=triplet"]).loss.settings == {}


def test_demo_cli_rejects_a_missing_data_folder(facetool_cli, tmp_path: Path):
    result = facetool_cli("demo", "--data", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_counted_says_one_in_the_singular_and_more_in_the_plural():
    assert [counted(n, "epoch") for n in (0, 1, 5)] == ["0 epochs", "1 epoch", "5 epochs"]
    assert [counted(n, "batch", "batches") for n in (1, 2)] == ["1 batch", "2 batches"]
