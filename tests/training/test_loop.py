"""The training loop on a real face cache of LFW crops: loss falls, resume repeats, empty rounds are skipped."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from train_helpers import StopAfter, build_lfw_cache

from facetool.config.train import TrainConfig
from facetool.miners import Miner
from facetool.models.checkpoint import load_checkpoint
from facetool.training import selection
from facetool.training.loop import Trainer, train
from facetool.training.progress import TrainProgress
from facetool.training.sources import load_training_data

NO_AUGMENT = {"random_crop": False, "flip": False, "color_jitter": False}


def tiny_config(cache: Path, run_dir: Path, **changes) -> TrainConfig:
    settings = {
        "data_dir": cache,
        "checkpoint_dir": run_dir,
        "backbone": "test-cnn",
        "image_size": 48,
        "embedding_dim": 16,
        "batch_size": 30,
        "epoch_size": 4,
        "num_epochs": 3,
        "people_per_batch": 6,
        "images_per_person": 4,
        "learning_rate": 0.01,
        "device": "cpu",
        "validation": {"fraction": 0.2, "num_pairs": 40},
        "checkpoint_every": 2,
        **changes,
    }
    return TrainConfig.model_validate(settings)


def test_training_loss_falls_and_run_dir_is_complete(small_cache, tmp_path):
    config = tiny_config(
        small_cache,
        tmp_path / "run",
        miner="random",
        augment=NO_AUGMENT,
        dropout_prob=0.0,
        people_per_batch=10,
        images_per_person=6,
        epoch_size=6,
        learning_rate=0.003,
        validation={"fraction": 0.0},
        num_epochs=5,
    )
    result = train(config)
    losses = [r["train_loss"] for r in result.history]
    assert result.epochs == 5 and len(losses) == 5
    assert sum(losses[-2:]) < 0.85 * sum(losses[:2]), losses
    assert result.dropped_identities == 1
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.toml", "train.log", "history.json", "last.pth", "best.pth", "epoch_0002.pth"} <= names
    assert {"epoch_0004.pth", "loss.png", "learning_rate.png", "triplets.png"} <= names
    assert "val_accuracy.png" not in names, "validation is off: no empty accuracy plot"
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == result.history
    log = (tmp_path / "run" / "train.log").read_text()
    assert "left out 1 identities" in log and "anchor-positive pairs" in log
    ck = load_checkpoint(tmp_path / "run" / "last.pth")
    assert (
        ck["epoch"] == 5
        and ck["backbone"]["name"] == "test-cnn"
        and ck["config"]["miner"] == {"name": "random"}
    )
    run = tmp_path / "run"
    best = min(result.history, key=lambda r: r["train_loss"])["epoch"]
    assert load_checkpoint(run / "best.pth")["epoch"] == best
    assert os.stat(run / "epoch_0004.pth").st_nlink == 1, "epoch 4's copy outlived epoch 4's last.pth"
    if best == 5:
        assert os.stat(run / "best.pth").st_ino == os.stat(run / "last.pth").st_ino, "written once, linked"


def test_validation_and_lr_schedule_recorded(small_cache, tmp_path):
    config = tiny_config(small_cache, tmp_path / "run", lr_step_size=1, lr_gamma=0.5, optimizer="sgd")
    history = train(config).history
    assert [r["learning_rate"] for r in history] == pytest.approx([0.01, 0.005, 0.0025])
    for record in history:
        assert 0.0 <= record["val_accuracy"] <= 1.0 and record["val_loss"] >= 0.0
        assert record["anchor_positive_pairs"] > 0 and record["batches"] == 4


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(small_cache, tmp_path):
    whole = train(tiny_config(small_cache, tmp_path / "whole"))
    first = train(tiny_config(small_cache, tmp_path / "split", num_epochs=2))
    assert first.epochs == 2
    resumed = train(tiny_config(small_cache, tmp_path / "split"), resume="auto")
    assert resumed.resumed_from == tmp_path / "split" / "last.pth"
    assert resumed.epochs == whole.epochs == 3
    a = load_checkpoint(whole.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    strip = [{k: v for k, v in r.items() if k not in ("images_per_s", "time_s")} for r in a["history"]]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("images_per_s", "time_s")} for r in b["history"]
    ]


def test_resume_across_a_miner_stage_and_cosine_warm_up_repeats_the_run(small_cache, tmp_path):
    recipe = {
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "miner_stages": [{"epoch": 3, "miner": "hard"}],
        "num_epochs": 4,
    }
    whole = train(tiny_config(small_cache, tmp_path / "whole", **recipe))
    assert [r["miner"] for r in whole.history] == ["semihard", "semihard", "hard", "hard"]
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    warm = [0.5, 1.0, 1.0, 1.0]
    assert [r["learning_rate"] for r in whole.history] == pytest.approx(
        [0.01 * c * w for c, w in zip(cosine, warm, strict=True)]
    )
    assert "epoch 3: triplets mined by hard" in (tmp_path / "whole" / "train.log").read_text()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(small_cache, tmp_path / "split", **recipe), progress=StopAfter(2))
    assert load_checkpoint(tmp_path / "split" / "last.pth")["epoch"] == 2
    resumed = train(tiny_config(small_cache, tmp_path / "split", **recipe), resume="auto")
    a = load_checkpoint(whole.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["learning_rate"] for r in a["history"]] == [r["learning_rate"] for r in b["history"]]


class NoTriplets(Miner):
    """A real miner that never finds a valid negative, as happens when embeddings collapse."""

    name = "none-found"

    def mine(self, embeddings, labels, margin, generator):
        empty = torch.zeros(0, dtype=torch.long, device=embeddings.device)
        return empty, empty, empty


def test_rounds_without_triplets_are_skipped_and_counted(small_cache, tmp_path):
    trainer = Trainer(tiny_config(small_cache, tmp_path / "run", num_epochs=1), TrainProgress())
    trainer.miners[trainer.config.miner.label] = NoTriplets()
    trainer.run()
    record = trainer.history[0]
    assert record["skipped_batches"] == record["batches"] == 4
    assert record["train_loss"] is None and record["trained_triplets"] == 0
    assert "NaN" not in (tmp_path / "run" / "history.json").read_text()
    assert "no valid triplet" in (tmp_path / "run" / "train.log").read_text()


def test_inception_resnet_v1_trains_a_step(small_cache, tmp_path):
    config = tiny_config(
        small_cache,
        tmp_path / "run",
        backbone="inception_resnet_v1",
        image_size=80,
        embedding_dim=32,
        epoch_size=1,
        num_epochs=1,
        batch_size=6,
        people_per_batch=2,
        images_per_person=2,
        validation={"fraction": 0.0},
    )
    result = train(config)
    assert result.history[0]["trained_triplets"] == 2
    assert result.history[0]["train_loss"] is not None


def test_threads_setting_applies_to_the_run_and_is_restored(small_cache, tmp_path):
    before = torch.get_num_threads()
    config = tiny_config(
        small_cache, tmp_path / "run", threads=1, num_epochs=1, epoch_size=1, validation={"fraction": 0.0}
    )
    result = train(config)
    assert result.history[0]["batches"] == 1
    assert "1 CPU threads" in (tmp_path / "run" / "train.log").read_text()
    assert "eager steps" in (tmp_path / "run" / "train.log").read_text()
    assert torch.get_num_threads() == before


def test_run_directory_that_is_a_file_is_one_clear_error(small_cache, tmp_path):
    from facetool.errors import FacetoolError

    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    with pytest.raises(
        FacetoolError, match=r"taken: cannot create the run folder: it exists and is not a folder"
    ):
        train(tiny_config(small_cache, blocker))
    with pytest.raises(
        FacetoolError, match=r"taken/run: cannot create the run folder: a parent of it is a file"
    ):
        train(tiny_config(small_cache, blocker / "run"))
    assert blocker.read_text() == "a file"


def test_extra_negatives_bring_in_single_image_people_and_leave_validation_alone(lfw_dir, tmp_path):
    cache = build_lfw_cache(lfw_dir, tmp_path / "faces.h5", identities=8, per_identity=5, singles=4)
    lines: list[str] = []
    splits = {}
    for extra in (0, 5):
        cfg = tiny_config(
            cache, tmp_path / f"run{extra}", extra_negatives=extra, validation={"fraction": 0.25}
        )
        data = load_training_data(cache, cfg, torch.device("cpu"), lines.append)
        splits[extra] = (data.train.identities, data.val.identities, data.dropped, data.train.counts())
        data.close()
    plain, extra = splits[0], splits[5]
    assert plain[2] == 4 and extra[2] == 0
    assert extra[1] == plain[1], "the validation people are those of a run without extra negatives"
    singles = set(extra[0]) - set(plain[0])
    assert len(singles) == 4 and set(plain[0]) < set(extra[0])
    assert all(n == 1 for name, n in zip(extra[0], extra[3], strict=True) if name in singles)
    assert "4 identities with one image train as extra negatives only" in lines

    result = train(tiny_config(cache, tmp_path / "run", extra_negatives=5, num_epochs=1))
    assert result.epochs == 1 and result.dropped_identities == 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "round 1: 28 images of 6 people" in log, "6 people x 4 images, and the 4 outside the round once"


@pytest.mark.parametrize(
    ("loss", "augment", "size"),
    [("triplet", {}, 54), pytest.param("batch-hard", NO_AUGMENT, 48, marks=pytest.mark.extras)],
)
def test_faces_resized_once_train_the_weights_of_faces_resized_every_round(
    small_cache, tmp_path, monkeypatch, loss, augment, size
):
    """96 px crops for a 48 px network, augmented (mining sees the same inputs) or not (the network gets the
    same memory layout: a convolution computes other bits from the same values laid out otherwise)."""
    checkpoints, logs = {}, {}
    for once in (True, False):
        run_dir = tmp_path / f"once-{once}"
        settings = {"loss": loss, "augment": augment, "validation": {"fraction": 0.0}}
        monkeypatch.setattr(selection, "RESIZE_ONCE", once)
        train(tiny_config(small_cache, run_dir, **settings))
        checkpoints[once] = load_checkpoint(run_dir / "last.pth")
        logs[once] = (run_dir / "train.log").read_text()
    assert f"faces resized once to {size} px: 0.00 GiB of float faces in host memory" in logs[True]
    assert f"faces resized to {size} px in every round: resizing once is off" in logs[False]
    once, every = checkpoints[True]["model"], checkpoints[False]["model"]
    assert once.keys() == every.keys() and all(torch.equal(once[k], every[k]) for k in once)
    drop = ("images_per_s", "time_s")
    history = [
        [{k: v for k, v in r.items() if k not in drop} for r in ck["history"]] for ck in checkpoints.values()
    ]
    assert history[0] == history[1] and history[0][-1]["train_loss"] > 0
