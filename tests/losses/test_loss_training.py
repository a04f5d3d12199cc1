"""Training with the loss plugins on a real LFW face cache: the loss falls, resume repeats the run exactly
(class centres included), the exported model holds no loss parameter, `plugins list` shows the losses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plugin_helpers import plugin_site
from safetensors.torch import load_file
from train_helpers import StopAfter, small_train_command

from facetool.config.train import TrainConfig
from facetool.models.checkpoint import load_checkpoint
from facetool.models.loading import load_embedding_model
from facetool.training.distributed import state_digest
from facetool.training.loop import train

NO_AUGMENT = {"random_crop": False, "flip": False, "color_jitter": False}


def config(cache: Path, run_dir: Path, loss: dict, **changes) -> TrainConfig:
    settings = {
        "data_dir": cache,
        "checkpoint_dir": run_dir,
        "backbone": "test-cnn",
        "image_size": 48,
        "embedding_dim": 16,
        "batch_size": 24,
        "epoch_size": 5,
        "num_epochs": 4,
        "people_per_batch": 8,
        "images_per_person": 6,
        "learning_rate": 0.003,
        "dropout_prob": 0.0,
        "augment": NO_AUGMENT,
        "miner": "random",
        "device": "cpu",
        "threads": 1,
        "validation": {"fraction": 0.0},
        "loss": loss,
        **changes,
    }
    return TrainConfig.model_validate(settings)


@pytest.mark.extras
@pytest.mark.parametrize(
    "loss",
    [
        {"name": "arcface", "scale": 16.0, "margin": 0.2},
        {"name": "cosface", "scale": 16.0, "margin": 0.2},
        {"name": "arcface-triplet", "scale": 16.0, "margin": 0.2, "triplet_weight": 2.0},
    ],
    ids=lambda loss: loss["name"],
)
def test_training_with_each_loss_lowers_it(people_cache: Path, tmp_path: Path, loss: dict) -> None:
    result = train(config(people_cache, tmp_path / "run", loss))
    losses = [r["train_loss"] for r in result.history]
    assert sum(losses[-2:]) < 0.9 * sum(losses[:2]), losses
    ck = load_checkpoint(result.last_checkpoint)
    (centres,) = [v for k, v in ck["loss"].items() if k.endswith("centres")]
    assert centres.shape == (result.train_identities, 16)
    if loss["name"] == "arcface-triplet":
        # a round's triplets last several of these short epochs (the rest of a round is carried over)
        assert all(r["miner"] == "random" and r["trained_triplets"] > 0 for r in result.history)
        assert sum(r["triplets"] for r in result.history) >= sum(
            r["trained_triplets"] for r in result.history
        )
    else:
        log = (tmp_path / "run" / "train.log").read_text()
        assert "labelled batches (no mining)" in log
        assert all(r["miner"] == "none" and r["images"] > 0 for r in result.history)


@pytest.mark.extras
@pytest.mark.parametrize(
    ("loss", "state"),
    [
        ({"name": "arcface", "scale": 16.0, "margin": 0.2}, ["centres"]),
        ({"name": "batch-hard", "margin": "hinge"}, []),
    ],
    ids=["arcface", "batch-hard"],
)
def test_resume_repeats_a_run_exactly(
    people_cache: Path, tmp_path: Path, loss: dict, state: list[str]
) -> None:
    """A labels loss with parameters, and a groups loss whose people come in a drawn order, resume exactly."""
    recipe = {"num_epochs": 3, "lr_schedule": "cosine", "warmup_epochs": 1, "augment": {}}
    whole = train(config(people_cache, tmp_path / "whole", loss, **recipe))
    with pytest.raises(KeyboardInterrupt):
        train(config(people_cache, tmp_path / "split", loss, **recipe), progress=StopAfter(2))
    assert load_checkpoint(tmp_path / "split" / "last.pth")["epoch"] == 2
    resumed = train(config(people_cache, tmp_path / "split", loss, **recipe), resume="auto")
    a, b = load_checkpoint(whole.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for part in ("model", "loss"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert list(a["loss"]) == state
    assert resumed.resumed_from == tmp_path / "split" / "last.pth" and b["epoch"] == 3
    states_a, states_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert states_a.keys() == states_b.keys()
    for key in states_a:
        for name, value in states_a[key].items():
            assert torch.equal(value, states_b[key][name]), (key, name)


@pytest.mark.extras
def test_export_of_an_arcface_model_has_no_loss_parameter(people_cache: Path, tmp_path: Path) -> None:
    run = train(config(people_cache, tmp_path / "run", {"name": "arcface"}, num_epochs=1, epoch_size=2))
    model, _ = load_embedding_model(run.last_checkpoint)
    assert not any("centres" in name for name, _ in model.named_parameters())
    out = tmp_path / "model.safetensors"
    env = {**os.environ, "FACETOOL_SHARED": os.environ.get("FACETOOL_SHARED", "")}
    done = subprocess.run(
        [sys.executable, "-m", "facetool", "export", str(run.last_checkpoint), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    tensors = load_file(out)
    assert not any("centres" in key for key in tensors)
    assert tensors.keys() == load_checkpoint(run.last_checkpoint)["model"].keys()


@pytest.mark.extras
def test_plugins_list_shows_every_group() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facetool", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["kind"] for r in rows} == {"miner", "backbone", "loss", "callback", "detector"}
    losses = {r["name"]: r for r in rows if r["kind"] == "loss"}
    assert losses["triplet"]["package"] == "facetool"
    for name in ("arcface", "cosface", "arcface-triplet", "batch-hard"):
        assert losses[name]["package"] == "facetool-extras" and losses[name]["status"] == "ok"


@pytest.mark.extras
@pytest.mark.parametrize("loss", ["arcface", "batch-hard"])
def test_two_processes_train_with_identical_weights_and_loss_state(
    people_cache: Path, tmp_path: Path, loss: str
) -> None:
    run_dir = tmp_path / "run"
    command = small_train_command(
        people_cache, run_dir, "--num-epochs", "1", "--people-per-batch", "4", "--nproc", "2",
        settings={"epoch_size": "3", "loss": loss},
    )  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    ck = load_checkpoint(run_dir / "last.pth")
    (weights,) = re.findall(r"weights identical on all 2 ranks: sha256 ([0-9a-f]{64})", log)
    assert state_digest(ck["model"]) == weights and ck["config"]["loss"] == {"name": loss}
    assert ck["history"][0]["images"] > 0
    if loss == "arcface":
        (digest,) = re.findall(r"loss state identical on all 2 ranks: sha256 ([0-9a-f]{64})", log)
        assert state_digest(ck["loss"]) == digest
    else:
        assert ck["loss"] == {} and "batches of whole people (no mining)" in log


@pytest.mark.extras
def test_batch_hard_training_lowers_its_loss_without_mining(people_cache: Path, tmp_path: Path) -> None:
    loss = {"name": "batch-hard", "margin": "hinge"}
    result = train(config(people_cache, tmp_path / "run", loss, alpha=0.5))
    losses = [r["train_loss"] for r in result.history]
    assert sum(losses[-2:]) < 0.9 * sum(losses[:2]), losses
    assert all(r["miner"] == "none" and r["triplets"] == 0 for r in result.history)
    assert all(0 < r["active_triplets"] <= r["images"] for r in result.history)
    assert load_checkpoint(result.last_checkpoint)["loss"] == {}
    assert "batches of whole people (no mining)" in (tmp_path / "run" / "train.log").read_text()


RECORDER = """
from facetool.losses import Loss

BATCHES = []


class Recorder(Loss):
    name = "recorder"
    description = "records the labels of every batch it is given"
    needs = "{needs}"

    def compute(self, embeddings, labels):
        BATCHES.append(labels.tolist())
        return embeddings.pow(2).sum() * 0.0
"""


def runs_of(labels: list[int]) -> list[int]:
    return [v for i, v in enumerate(labels) if i == 0 or labels[i - 1] != v]


@pytest.mark.parametrize("needs", ["groups", "labels"])
def test_a_groups_loss_gets_whole_people_and_a_labels_loss_shuffled_images(
    people_cache: Path, tmp_path: Path, needs: str
) -> None:
    with plugin_site(tmp_path / "site") as install:
        module = f"recorder_{needs}"
        install(
            module,
            {"facetool.losses": {"recorder": f"{module}:Recorder"}},
            {module: RECORDER.format(needs=needs)},
        )
        train(config(people_cache, tmp_path / "run", "recorder", num_epochs=1, epoch_size=6))
        batches = __import__(module).BATCHES
    assert len(batches) == 6 and all(len(b) == 24 for b in batches)
    grouped = [len(runs_of(b)) == len(set(b)) for b in batches]
    if needs == "groups":
        assert all(grouped) and all(len(set(b)) == 4 for b in batches), batches
    else:
        assert not any(grouped), batches


@pytest.mark.extras
@pytest.mark.parametrize("loss", ["batch-hard", "arcface"])
def test_a_round_keeps_to_whole_batches_of_images(people_cache: Path, tmp_path: Path, loss: str) -> None:
    """16 images a round in batches of 15: one batch, not a second of one image (which batch norm refuses)."""
    changes = {
        "backbone": {"name": "test-cnn", "head": "gdc"},
        "batch_size": 15,
        "people_per_batch": 4,
        "images_per_person": 4,
    }
    result = train(config(people_cache, tmp_path / "run", loss, num_epochs=1, **changes))
    (record,) = result.history
    assert record["rounds"] == 5 and record["batches"] == 5 and record["images"] == 5 * 15


def _resume(run_dir: Path, *sets: str):
    from cli_helpers import facetool_in_process

    args = [a for s in sets for a in ("--set", s)]
    return facetool_in_process(
        "train", "--resume", "auto", "--checkpoint-dir", run_dir, "--num-epochs", "2", *args
    )


@pytest.mark.extras
def test_a_run_resumes_only_with_its_own_loss(people_cache: Path, tmp_path: Path, lfw_dir: Path) -> None:
    """Another loss would take over the checkpoint's class centres (arcface -> cosface loads them silently) or
    not fit them; either is refused in one whole line, and the run folder's config.toml stays as it was."""
    from cache_helpers import some_identities, write_people_cache

    run_dir = tmp_path / "run"
    train(config(people_cache, run_dir, {"name": "arcface", "scale": 16.0}, num_epochs=1, epoch_size=2))
    saved, last = (run_dir / "config.toml").read_bytes(), (run_dir / "last.pth").read_bytes()
    fewer = write_people_cache(
        lfw_dir, tmp_path / "fewer.h5", some_identities(lfw_dir, 4, min_images=6), 6, 48
    )
    misfit = _resume(run_dir, f"data_dir={fewer}")
    assert misfit.returncode == 1 and misfit.stderr.splitlines()[-1].startswith("error: "), misfit.stderr
    whole = (
        "checkpoint field 'loss' does not fit this run (Error(s) in loading state_dict for ArcFaceLoss: "
        "size mismatch for centres: copying a param with shape torch.Size([8, 16])"
    )
    assert whole in misfit.stderr.splitlines()[-1]
    assert (run_dir / "config.toml").read_bytes() == saved, "a refused resume leaves config.toml as it was"
    for other in ("cosface", "triplet"):
        refused = _resume(run_dir, f"loss={other}")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines()[-1] == (
            f"error: {run_dir / 'last.pth'}: the run was trained with loss 'arcface', this one asks for "
            f"'{other}'; a resumed run keeps its loss (set loss = 'arcface'), or start a new run in another "
            "folder or with --overwrite"
        )
    assert (run_dir / "config.toml").read_bytes() == saved and (run_dir / "last.pth").read_bytes() == last


@pytest.mark.extras
def test_a_loss_value_that_breaks_the_loss_is_named_as_the_users(people_cache: Path, tmp_path: Path) -> None:
    from cli_helpers import facetool_in_process

    run = facetool_in_process(*small_train_command(
        people_cache, tmp_path / "run", "--num-epochs", "1",
        settings={"epoch_size": "1", "loss": "arcface", "loss.scale": "1e300"},
    )[3:])  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1].startswith(
        "error: loss.scale = 1e+300 (your value in the [loss] table): loss 'arcface' "
    )
    assert "default (64.0)" in run.stderr and "broke its contract" not in run.stderr
