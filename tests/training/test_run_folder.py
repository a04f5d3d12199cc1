"""The run folder under trust faults: resume writes only where told, an earlier run is never overwritten
silently, one trainer per folder, a failed start leaves nothing behind, every checkpoint field is checked,
checkpoints name the people they were trained on. Real runs of the tiny backbone on LFW crops."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import StopAfter

from facetool.cache import open_cache
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, FacetoolError, ModelFileError, PluginError, UsageError
from facetool.identities import identity_digests
from facetool.models import load_embedding_model
from facetool.models.checkpoint import load_checkpoint, save_checkpoint
from facetool.training.loop import train
from facetool.training.progress import TrainProgress
from facetool.training.resume import load_train_config
from facetool.training.run_folder import RunFolder
from facetool.training.validate import draw_triplets


def tiny(cache: Path, run_dir: Path, **changes) -> TrainConfig:
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "test-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 2, "num_epochs": 1, "people_per_batch": 6,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1,
        "validation": {"fraction": 0.0}, **changes,
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


class Losses(TrainProgress):
    """Records the running loss the progress display is given at each batch."""

    def __init__(self) -> None:
        self.losses: list[float | None] = []

    def on_step(self, trainer, step) -> None:
        self.losses.append(step.loss)


@pytest.fixture(scope="module")
def first_run(small_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Losses]:
    """One finished epoch in run folder `a`, its progress calls recorded."""
    progress = Losses()
    run = tmp_path_factory.mktemp("first") / "a"
    train(tiny(small_cache, run, epoch_size=4), progress=progress)
    return run, progress


def test_resume_writes_beside_the_checkpoint_never_into_the_recorded_run(small_cache, first_run, tmp_path):
    run, _ = first_run
    original = (run / "last.pth").read_bytes()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "last.pth").write_bytes(original)
    config = load_train_config(None, [("num_epochs", 2)], resume=str(copy_dir / "last.pth"))
    assert config.checkpoint_dir == copy_dir
    train(config, resume=copy_dir / "last.pth")
    assert (run / "last.pth").read_bytes() == original, "the run the copy came from is untouched"
    assert load_checkpoint(copy_dir / "last.pth")["epoch"] == 2
    assert [r["epoch"] for r in json.loads((copy_dir / "history.json").read_text())] == [1, 2]

    crafted = load_checkpoint(run / "last.pth")
    victim = tmp_path / "victim"
    crafted["config"]["checkpoint_dir"] = str(victim)
    save_checkpoint(crafted, tmp_path / "crafted" / "x.pth")
    config = load_train_config(None, [], resume=str(tmp_path / "crafted" / "x.pth"))
    assert config.checkpoint_dir == tmp_path / "crafted" and not victim.exists()
    explicit = load_train_config(
        None, [("checkpoint_dir", str(tmp_path / "mine"))], resume=str(tmp_path / "crafted" / "x.pth")
    )
    assert explicit.checkpoint_dir == tmp_path / "mine"


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(small_cache, tmp_path):
    run = tmp_path / "run"
    train(tiny(small_cache, run, num_epochs=2, checkpoint_every=1))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".pth", ".json")}
    with pytest.raises(UsageError, match=r"already holds a training run; continue it with --resume auto"):
        train(tiny(small_cache, run, num_epochs=2))
    cli = subprocess.run(
        [sys.executable, "-m", "facetool", "train", "--data", str(small_cache), "--checkpoint-dir", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert cli.returncode == 2, cli.stderr
    errors = [line for line in cli.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "--resume auto" in errors[0] and "--overwrite" in errors[0], cli.stderr
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".pth", ".json")}

    result = train(tiny(small_cache, run, num_epochs=1, checkpoint_every=1), overwrite=True)
    assert [r["epoch"] for r in result.history] == [1]
    assert not (run / "epoch_0002.pth").exists(), "the earlier run's later checkpoints are gone"
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [1]


def test_second_trainer_on_a_run_folder_is_refused(small_cache, tmp_path):
    run = tmp_path / "run"
    held = RunFolder(run)
    try:
        with pytest.raises(FacetoolError, match=r"another facetool train is using this run folder"):
            train(tiny(small_cache, run), resume="auto")
    finally:
        held.close()
    assert not list(run.glob("*.pth"))


def test_a_failed_start_leaves_no_folder_behind(small_cache, tmp_path):
    with pytest.raises(PluginError, match="no-such-net"):
        train(tiny(small_cache, tmp_path / "new", backbone="no-such-net"))
    assert not (tmp_path / "new").exists()
    with pytest.raises(FacetoolError, match="face cache not found"):
        train(tiny(tmp_path / "absent.h5", tmp_path / "new2"))
    assert not (tmp_path / "new2").exists()


def _break(field: str, value):
    def change(ck: dict) -> None:
        ck[field] = value

    return change


MALFORMED = [
    ("epoch", _break("epoch", "1"), "'epoch' is '1'"),
    ("epoch", _break("epoch", -1), "'epoch' is -1"),
    ("epoch", _break("epoch", True), "'epoch' is True"),
    ("history", _break("history", {"epoch": 1}), "'history' is dict"),
    ("history", _break("history", [{"epoch": "one"}]), "'history\\[0\\]'"),
    ("history", _break("history", []), "'history' does not hold epochs 1 to 1"),
    ("optimizer", _break("optimizer", "adam"), "'optimizer' is str"),
    ("optimizer", _break("optimizer", {"state": {}, "param_groups": []}), "'optimizer' does not fit"),
    ("scheduler", _break("scheduler", 5), "'scheduler' is int"),
    ("model", _break("model", {"w": torch.zeros(1)}), "'model' does not fit"),
]


@pytest.mark.parametrize(
    ("field", "change", "message"), MALFORMED, ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)]
)
def test_malformed_checkpoint_fields_are_named(small_cache, first_run, tmp_path, field, change, message):
    run, _ = first_run
    ck = load_checkpoint(run / "last.pth")
    change(ck)
    bad = tmp_path / "bad.pth"
    save_checkpoint(ck, bad)
    with pytest.raises(FacetoolError, match=f"bad.pth: checkpoint field {message}") as caught:
        train(tiny(small_cache, tmp_path / "resumed", num_epochs=2), resume=bad)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "resumed").exists()


def test_resume_repeats_the_run_whatever_the_global_generators_hold(small_cache, tmp_path):
    """Every draw of training comes from generators seeded by (seed, epoch) (dropout from the global torch
    generator, reseeded each epoch), so a checkpoint holds no RNG state: resumed after the global generators
    moved on, from a checkpoint carrying an older version's `rng` field, epoch 2 equals the uninterrupted run's."""
    whole = load_checkpoint(train(tiny(small_cache, tmp_path / "whole", num_epochs=2)).last_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(small_cache, tmp_path / "split", num_epochs=2), progress=StopAfter(1))
    last = tmp_path / "split" / "last.pth"
    ck = load_checkpoint(last)
    assert "rng" not in ck and ck["epoch"] == 1
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)
    legacy = np.random.get_state()
    older = {
        "torch": torch.get_rng_state(),
        "numpy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), *legacy[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    save_checkpoint({**ck, "rng": older}, last)
    resumed_run = train(tiny(small_cache, tmp_path / "split", num_epochs=2), resume="auto")
    resumed = load_checkpoint(resumed_run.last_checkpoint)
    assert resumed["epoch"] == whole["epoch"] == 2
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_checkpoint_config_and_backbone_are_checked(first_run, tmp_path):
    run, _ = first_run
    ck = load_checkpoint(run / "last.pth")
    save_checkpoint({**ck, "config": ["x"]}, tmp_path / "c1.pth")
    with pytest.raises(ConfigError, match=r"c1\.pth: checkpoint field 'config' is list, not a table"):
        load_train_config(None, [], resume=str(tmp_path / "c1.pth"))
    save_checkpoint({**ck, "config": {**ck["config"], "backbone": "gone-net"}}, tmp_path / "c2.pth")
    with pytest.raises(ConfigError, match=r"c2\.pth: the checkpoint's backbone 'gone-net' is not installed"):
        load_train_config(None, [], resume=str(tmp_path / "c2.pth"))
    save_checkpoint({**ck, "backbone": {**ck["backbone"], "image_size": 100_000}}, tmp_path / "c3.pth")
    with pytest.raises(ModelFileError, match=r"c3\.pth: checkpoint backbone.*image_size"):
        load_embedding_model(tmp_path / "c3.pth")
    save_checkpoint({**ck, "backbone": {**ck["backbone"], "name": "gone-net"}}, tmp_path / "c4.pth")
    with pytest.raises(PluginError, match=r"c4\.pth: checkpoint backbone cannot be built"):
        load_embedding_model(tmp_path / "c4.pth")


def test_checkpoint_names_the_people_it_was_trained_on(small_cache, first_run, tmp_path):
    run, _ = first_run
    with open_cache(small_cache) as cache:
        names, counts = list(cache.identities), np.bincount(cache.labels, minlength=len(cache.identities))
    trained = identity_digests([n for n, c in zip(names, counts, strict=True) if c >= 2])
    assert load_checkpoint(run / "last.pth")["train_identities"] == trained
    _, info = load_embedding_model(run / "last.pth")
    assert info.train_identities == tuple(trained)

    held_out = train(tiny(small_cache, tmp_path / "val", validation={"fraction": 0.3, "num_pairs": 40}))
    digests = load_checkpoint(held_out.last_checkpoint)["train_identities"]
    assert set(digests) < set(trained) and len(digests) == held_out.train_identities

    old = load_checkpoint(run / "last.pth")
    old.pop("train_identities")
    save_checkpoint(old, tmp_path / "old.pth")
    assert load_embedding_model(tmp_path / "old.pth")[1].train_identities is None


def test_progress_shows_the_running_loss_from_the_first_step(first_run):
    _, progress = first_run
    assert progress.losses and all(loss is not None for loss in progress.losses), progress.losses


def test_run_files_follow_the_umask_and_config_paths_are_absolute(small_cache, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "faces.h5").symlink_to(small_cache)
    monkeypatch.chdir(work)
    old = os.umask(0o022)
    try:
        train(tiny(Path("faces.h5"), Path("run")))
    finally:
        os.umask(old)
    run = work / "run"
    for name in ("last.pth", "best.pth", "history.json", "config.toml", "train.log", "loss.png"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name
    saved = load_train_config(None, [("checkpoint_dir", str(run))], resume="auto")
    assert saved.data_dir == work / "faces.h5" and saved.checkpoint_dir == run
    monkeypatch.chdir(tmp_path)
    resumed = train(saved.model_copy(update={"num_epochs": 2}), resume="auto")
    assert resumed.epochs == 2


def test_config_bounds_reject_infinite_rate_and_huge_pair_counts():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.model_validate({"learning_rate": float("inf")})
    with pytest.raises(ValueError, match="num_pairs"):
        TrainConfig.model_validate({"validation": {"num_pairs": 10**9}})
    labels = np.repeat(np.arange(4000), 3)
    started = time.perf_counter()
    triplets = draw_triplets(labels, 100_000, np.random.default_rng(0))
    assert time.perf_counter() - started < 2.0
    assert (labels[triplets[:, 0]] == labels[triplets[:, 1]]).all()
    assert (triplets[:, 0] != triplets[:, 1]).all()
    assert (labels[triplets[:, 0]] != labels[triplets[:, 2]]).all()


def test_help_shows_the_config_defaults(facetool_cli):
    result = facetool_cli("train", "--help", env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for expected in ("(default: 50)", "(default: 0.1)", "(default: 90)", "(default: 0.2)", "--overwrite"):
        assert expected in text, expected
    assert "Epochs to train" in text and "Initial learning rate" in text


def test_epochs_record_the_active_triplets_that_triplets_png_plots(first_run):
    run, _ = first_run
    (record,) = json.loads((run / "history.json").read_text())
    assert 0 < record["active_triplets"] <= record["trained_triplets"]
    assert record["active_fraction"] == record["active_triplets"] / record["trained_triplets"]
    assert (run / "triplets.png").read_bytes()[:4] == b"\x89PNG"
