"""A run's start-up decodes no face: each is decoded and resized on its first round (issue 36), on a real LFW
cache, and the run trains bit for bit as one whose faces were all resized before its first step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facetool.config.train import TrainConfig
from facetool.training.loop import Trainer


def config(cache: Path, run_dir: Path) -> TrainConfig:
    """96 px faces for a 48 px network (so they are resized once); rounds of 4 of the 10 people."""
    return TrainConfig.model_validate(
        {
            "data_dir": cache,
            "checkpoint_dir": run_dir,
            "backbone": "tiny-cnn",
            "image_size": 48,
            "embedding_dim": 16,
            "batch_size": 30,
            "epoch_size": 3,
            "people_per_batch": 4,
            "images_per_person": 6,
            "learning_rate": 0.01,
            "device": "cpu",
            "threads": 1,
            "validation": {"fraction": 0.0},
        }
    )


def test_each_face_is_resized_on_its_first_round_and_trains_as_if_resized_up_front(small_cache, tmp_path):
    lazy = Trainer(config(small_cache, tmp_path / "lazy"))
    eager = Trainer(config(small_cache, tmp_path / "eager"))
    try:
        resized = lazy.selection.resized
        assert resized is not None and resized.resized_rows == 0, "start-up should decode no face"
        sampler, drawn = lazy.selection.sampler, []
        sample = sampler.sample

        def recording_sample(rng):
            drawn.append(sample(rng))
            return drawn[-1]

        sampler.sample = recording_sample
        eager.selection.resized.faces  # noqa: B018 - every face resized before the first step
        records = []
        for epoch in range(2):
            records.append((lazy.epoch_runner(epoch), eager.epoch_runner(epoch)))
            if epoch == 0:
                first = np.unique(drawn[0])
                assert len(drawn) >= 1 and resized.resized_rows == len(np.unique(np.concatenate(drawn)))
                assert len(first) <= resized.resized_rows < len(lazy.data)
        for mine, theirs in records:
            assert mine["train_loss"] == theirs["train_loss"]
        weights, reference = lazy.engine.model.state_dict(), eager.engine.model.state_dict()
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
    finally:
        lazy.close()
        eager.close()
