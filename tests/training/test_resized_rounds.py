"""A run's start-up decodes no face: each is decoded and resized on its first round (issue 36), on a real LFW
cache, and the run trains bit for bit as one whose faces were all resized before its first step; a corrupted
face stops the run in one line when a round first draws it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import torch
from train_helpers import small_train_command

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


def test_a_corrupted_face_stops_training_in_one_line_naming_the_cache(small_cache, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(small_cache, damaged)
    with h5py.File(damaged, "r+") as h5:
        start, stop = h5["faces/jpeg_offset"][3:5]
        h5["faces/jpeg"][start:stop] = np.full(stop - start, 7, np.uint8)
    command = small_train_command(
        damaged, tmp_path / "run", "--num-epochs", "1", settings={"epoch_size": "2"}
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == f"error: {damaged}: a stored face image is corrupted", done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "faces resized once to " in log and "epoch 1: " in log, "start-up should not decode the faces"
