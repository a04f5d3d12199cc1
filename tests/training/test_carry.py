"""Mined triplets that an epoch's end cuts off train first in the next epoch (issue 36), on a real LFW cache:
they are the rest of the round the seed chose, semi-hard on the embeddings they were mined with, the next
epoch's own rounds draw as before, and a run resumed at the boundary repeats the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError
from facetool.miners.base import squared_distances
from facetool.models.checkpoint import load_checkpoint
from facetool.training.loop import Trainer, train
from facetool.training.state import epoch_seeds


def config(cache: Path, run_dir: Path, **changes) -> TrainConfig:
    """Rounds of 6 people x 4 images give up to 8 steps of 10 triplets; epochs of 5 steps cut a round."""
    settings = {
        "data_dir": cache,
        "checkpoint_dir": run_dir,
        "backbone": "tiny-cnn",
        "image_size": 48,
        "embedding_dim": 16,
        "batch_size": 30,
        "epoch_size": 5,
        "num_epochs": 3,
        "people_per_batch": 6,
        "images_per_person": 4,
        "learning_rate": 0.01,
        "device": "cpu",
        "threads": 1,
        "validation": {"fraction": 0.0},
        **changes,
    }
    return TrainConfig.model_validate(settings)


def test_carried_triplets_are_the_rest_of_the_seeds_round_and_train_first(small_cache, tmp_path):
    trainer = Trainer(config(small_cache, tmp_path / "run"))
    runner, engine, selection = trainer.epoch_runner, trainer.engine, trainer.selection
    mined, drawn, stepped = [], [], []
    embed, step = engine.embed_inputs, engine.step

    def recording_embed(x):
        mined.append(embed(x))
        return mined[-1]

    def recording_select(miner, rng, generator, rows=None):
        chosen = selection(miner, rng, generator, rows)
        drawn.append(chosen)
        return chosen

    def recording_step(x, labels=None):
        stepped.append(x.clone())
        return step(x, labels)

    engine.embed_inputs, engine.step = recording_embed, recording_step
    runner.selection = _Calls(selection, recording_select)
    try:
        runner(0)
        carry = runner.carry
        assert carry is not None and carry.epoch == 1, "the tiny epoch should cut its last round"
        last, embeddings = drawn[-1], mined[-1]
        anchors, positives, negatives = carry.roles
        # the carried triplets are the untrained tail of the last round's mined triplets, none repeated
        chosen = {
            tuple(t)
            for t in torch.stack([last.mined.anchors, last.mined.positives, last.mined.negatives], 1).tolist()
        }
        carried = [tuple(t) for t in torch.stack(carry.roles, 1).tolist()]
        assert len(set(carried)) == len(carried) and set(carried) <= chosen
        # semi-hard on the embeddings they were mined with: same person, other person, d(a,n) < d(a,p) + alpha
        labels = last.labels
        dist = squared_distances(embeddings)
        assert bool((labels[anchors] == labels[positives]).all())
        assert bool((labels[anchors] != labels[negatives]).all())
        assert bool((dist[anchors, negatives] < dist[anchors, positives] + engine.criterion.margin).all())
        assert torch.equal(carry.inputs, last.inputs)

        before = len(stepped)
        drawn.clear()
        runner(1)
        # epoch 2 begins with the carried triplets, laid out [anchors; positives; negatives]
        first = torch.cat([role[:10] for role in carry.roles])
        assert torch.equal(stepped[before], last.inputs[first])
        # and its own first round is the one its seed draws first, as without the carried steps
        rng, _ = epoch_seeds(trainer.config.seed, 1)
        assert np.array_equal(drawn[0].rows, selection.sampler.sample(rng))
    finally:
        trainer.close()


class _Calls:
    """`selection` with its call recorded (a Selection instance's __call__ is looked up on its class)."""

    def __init__(self, selection, call) -> None:
        self._selection, self._call = selection, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._selection, name)


def test_a_run_resumed_with_carried_triplets_repeats_the_uninterrupted_one(small_cache, tmp_path):
    whole = train(config(small_cache, tmp_path / "whole"))
    first = train(config(small_cache, tmp_path / "split", num_epochs=2))
    saved = load_checkpoint(first.last_checkpoint)
    assert "carry" in saved and len(saved["carry"]["roles"][0]) > 0
    resumed = train(config(small_cache, tmp_path / "split"), resume="auto")
    a, b = load_checkpoint(whole.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_a_checkpoint_whose_carried_rows_point_outside_the_data_is_one_line(small_cache, tmp_path):
    first = train(config(small_cache, tmp_path / "run", num_epochs=1))
    saved = load_checkpoint(first.last_checkpoint)
    saved["carry"]["rows"] = saved["carry"]["rows"] + 10_000
    torch.save(saved, first.last_checkpoint)
    with pytest.raises(FacetoolError, match=r"checkpoint field 'carry' has rows that are not indices") as err:
        train(config(small_cache, tmp_path / "run", num_epochs=2), resume="auto")
    assert "\n" not in str(err.value)
