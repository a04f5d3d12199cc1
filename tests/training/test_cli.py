"""`facetool train` and `facetool plot` as real subprocesses: config errors, --print-config, SIGKILL + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from cli_helpers import facetool_in_process

from facetool.config.base import load_config
from facetool.config.protocol import ProtocolConfig
from facetool.config.train import BackboneConfig, TrainConfig
from facetool.models.checkpoint import load_checkpoint


def test_print_config_round_trips(facetool_cli, tmp_path):
    first = facetool_cli(
        "train",
        "--print-config",
        "--batch-size",
        "30",
        "--data",
        "x.h5",
        "--set",
        "augment.flip=false",
        "--set",
        "validation.fraction=0.25",
        "--learning-rate",
        "0.05",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    (tmp_path / "resolved.toml").write_text(first.stdout)
    second = facetool_cli("train", "--config", "resolved.toml", "--print-config", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    config = load_config(TrainConfig, tmp_path / "resolved.toml")
    assert (config.batch_size, config.learning_rate, config.augment.flip) == (30, 0.05, False)
    assert config.validation.fraction == 0.25 and config.data_dir == Path("x.h5")
    defaults = load_config(TrainConfig)
    assert (defaults.batch_size, defaults.num_epochs, defaults.learning_rate, defaults.alpha) == (
        90,
        50,
        0.1,
        0.2,
    )
    assert (defaults.people_per_batch, defaults.images_per_person, defaults.epoch_size) == (45, 40, 1000)
    assert (defaults.lr_step_size, defaults.lr_gamma, defaults.dropout_prob) == (15, 0.1, 0.6)


def test_a_protocol_recipe_trains_from_its_train_table(facetool_cli, tmp_path):
    """Every recipe in benchmarks/recipes (protocol files with a [train] table) is a valid `train --config`,
    and the whole file a valid protocol configuration."""
    recipes = sorted((Path(__file__).parents[2] / "benchmarks" / "recipes").glob("*.toml"))
    assert recipes
    for i, recipe in enumerate(recipes):  # one in a real subprocess, the rest in this one (same entry point)
        args = ("train", "--config", recipe, "--print-config")
        shown = facetool_cli(*args, cwd=tmp_path) if i == 0 else facetool_in_process(*args)
        assert shown.returncode == 0, f"{recipe.name}: {shown.stderr}"
        config = TrainConfig.model_validate(tomllib.loads(shown.stdout))
        table = tomllib.loads(recipe.read_text())["train"]
        backbone = BackboneConfig.model_validate(table["backbone"])
        assert (config.backbone, config.num_epochs) == (backbone, table["num_epochs"]), recipe.name
        ProtocolConfig.model_validate(tomllib.loads(recipe.read_text()))


def test_config_errors_name_key_and_file(facetool_cli, tmp_path):
    (tmp_path / "train.toml").write_text(
        "batch_size = 91\nlearnig_rate = 0.1\noptimizer = 'rmsprop'\n[augment]\nflip = 'sometimes'\n"
    )
    result = facetool_cli("train", "--config", "train.toml", "--set", "validation.fraction=1.5", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for key in (
        "batch_size: Input should be a multiple of 3",
        "learnig_rate: unknown key",
        "optimizer",
        "augment.flip",
    ):
        assert f"train.toml (with command-line overrides): {key}" in result.stderr
    assert "validation.fraction" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_resumed_run_config_errors_name_the_checkpoint(small_cache, tmp_path):
    from facetool.errors import ConfigError, FacetoolError
    from facetool.training.loop import train
    from facetool.training.resume import load_train_config

    run = train(load_train_config(None, [(k, v) for k, v in _settings(small_cache, tmp_path / "run", 1)]))
    config = load_train_config(None, [("num_epochs", 3)], resume=str(run.last_checkpoint))
    assert config.num_epochs == 3 and config.backbone.name == "test-cnn"
    with pytest.raises(ConfigError, match=r"last\.pth \(its stored config\): alpha"):
        load_train_config(None, [("alpha", -1)], resume=str(run.last_checkpoint))
    auto = load_train_config(None, [("checkpoint_dir", str(tmp_path / "run"))], resume="auto")
    assert auto.embedding_dim == 16
    other = load_train_config(None, [("embedding_dim", 8)], resume=str(run.last_checkpoint))
    with pytest.raises(FacetoolError, match=r"last\.pth: checkpoint backbone .* differs"):
        train(other, resume=run.last_checkpoint)


def test_missing_data_is_one_line_error(facetool_cli, tmp_path):
    result = facetool_cli("train", "--data", "nowhere.h5", "--checkpoint-dir", "run", cwd=tmp_path)
    assert result.returncode == 1
    assert "nowhere.h5" in result.stderr and "Traceback" not in result.stderr


def test_not_a_checkpoint_to_resume_from(facetool_cli, tmp_path):
    (tmp_path / "fake.pth").write_bytes(b"not a checkpoint")
    result = facetool_cli("train", "--resume", "fake.pth", cwd=tmp_path)
    assert result.returncode == 1
    assert "fake.pth" in result.stderr and "not a facetool checkpoint" in result.stderr


def _settings(cache: Path, run_dir: Path, epochs: int) -> list[tuple[str, object]]:
    return [
        ("data_dir", str(cache)), ("checkpoint_dir", str(run_dir)), ("num_epochs", epochs), ("batch_size", 30),
        ("people_per_batch", 6), ("images_per_person", 4), ("device", "cpu"), ("backbone", "test-cnn"),
        ("image_size", 48), ("embedding_dim", 16), ("epoch_size", 3), ("validation.num_pairs", 40),
        ("validation.fraction", 0.2), ("learning_rate", 0.01),
    ]  # fmt: skip


def _train_args(cache: Path, run_dir: Path, epochs: int) -> list[str]:
    return [
        "train", "--data", str(cache), "--checkpoint-dir", str(run_dir), "--num-epochs", str(epochs),
        "--batch-size", "30", "--people-per-batch", "6", "--images-per-person", "4", "--device", "cpu",
        "--set", "backbone=test-cnn", "--set", "image_size=48", "--set", "embedding_dim=16",
        "--set", "epoch_size=3", "--set", "validation.num_pairs=40", "--set", "validation.fraction=0.2",
        "--learning-rate", "0.01",
    ]  # fmt: skip


def test_sigkill_then_resume_auto_finishes_with_intact_history(small_cache, tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "facetool", *_train_args(small_cache, run_dir, 40)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = run_dir / "history.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if history.is_file() and len(json.loads(history.read_text())) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = load_checkpoint(run_dir / "last.pth")["epoch"]
    assert 2 <= killed_at < 40
    total = killed_at + 2
    result = subprocess.run(
        [sys.executable, "-m", "facetool", *_train_args(small_cache, run_dir, total), "--resume", "auto"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "training finished" in result.stdout
    records = json.loads(history.read_text())
    assert [r["epoch"] for r in records] == list(range(1, total + 1))
    assert load_checkpoint(run_dir / "last.pth")["epoch"] == total
    assert (
        f"resumed from {run_dir / 'last.pth'} after epoch {killed_at}" in (run_dir / "train.log").read_text()
    )
    assert not list(run_dir.glob(".*.tmp"))

    plots = subprocess.run(
        [sys.executable, "-m", "facetool", "plot", str(run_dir), "--out", str(tmp_path / "png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plots.returncode == 0, plots.stderr
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == ["learning_rate.png", "loss.png", "triplets.png", "val_accuracy.png"]
    assert all((tmp_path / "png" / name).read_bytes()[:4] == b"\x89PNG" for name in pngs)


def test_plot_of_a_folder_without_history(facetool_cli, tmp_path):
    result = facetool_cli("plot", str(tmp_path))
    assert result.returncode == 1 and "history.json" in result.stderr


def test_an_image_folder_is_not_detected_for_a_recipe_a_plugin_refuses(tmp_path, lfw_dir):
    """The [loss] keys and plugin names are checked before `--data DIR` is detected into the run folder."""
    images = tmp_path / "images"
    person = next(p for p in sorted(lfw_dir.iterdir()) if p.is_dir())
    (images / person.name).mkdir(parents=True)
    for image in person.glob("*.jpg"):
        (images / person.name / image.name).symlink_to(image)
    run_dir = tmp_path / "run"
    for sets, message in (
        (["backbone=test-cnn", "backbone.hed=gdc"], "error: backbone.hed: unknown key (backbone 'test-cnn')"),
        (["miner=semihardd"], "error: miner: unknown miner 'semihardd'; available: "),
    ):
        args = [a for s in sets for a in ("--set", s)]
        result = facetool_in_process("train", "--data", images, "--checkpoint-dir", run_dir, *args)
        assert result.returncode in (1, 2) and result.stderr.startswith(message), result.stderr
        assert len(result.stderr.splitlines()) == 1 and not run_dir.exists()


def test_train_help_shows_each_option_once_literally_and_without_lab_notes() -> None:
    """One dashed spelling per option, generated from TrainConfig; `[train]` is not eaten as markup; no
    underscore aliases, no truncated names, no notes from the lab in the texts."""
    import re

    done = facetool_in_process("train", "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    listed = re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", text, flags=re.MULTILINE)
    assert len(listed) == len(set(listed)) and "--data" in listed and "--num-epochs" in listed, listed
    assert not re.search(r"--[a-z]+_[a-z_]+", text), "an underscore spelling is listed"
    assert "…" not in text and "," not in "".join(listed)
    assert "[train] table" in text
    for note in ("fault drill", "3-6x", "slower"):
        assert note not in text
    old = facetool_in_process("train", "--num_epochs", "3", "--print-config")
    assert old.returncode == 2 and "No such option: --num_epochs" in old.stderr
    new = facetool_in_process("train", "--num-epochs", "3", "--data", "x.h5", "--print-config")
    assert new.returncode == 0 and "num_epochs = 3" in new.stdout and 'data_dir = "x.h5"' in new.stdout
