"""The trainer on a streamed face source (real LFW cache): the same rounds and weights as preloaded, exact
resume, the choice in the log, the older `data.preload` values."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from facetool.config.train import TrainConfig
from facetool.data.source import PreloadedSource
from facetool.data.stream import StreamedSource
from facetool.errors import FacetoolError
from facetool.models.checkpoint import load_checkpoint
from facetool.training.distributed import Ranks
from facetool.training.loop import Trainer, train
from facetool.training.progress import TrainProgress
from facetool.training.sources import load_training_data
from facetool.training.state import epoch_seeds


def config(cache: Path, run_dir: Path, preload: str, **changes: object) -> TrainConfig:
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "test-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 3, "num_epochs": 1, "people_per_batch": 6,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1,
        "validation": {"fraction": 0.2, "num_pairs": 40}, "data": {"preload": preload, "workers": 1},
        **changes,
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


def test_streamed_and_preloaded_training_choose_the_same_and_end_equal(small_cache, tmp_path):
    rounds = []
    for mode, kind in (("preload", PreloadedSource), ("stream", StreamedSource)):
        trainer = Trainer(config(small_cache, tmp_path / f"t-{mode}", mode), TrainProgress())
        try:
            assert isinstance(trainer.data, kind) and isinstance(trainer.val_set, kind)
            rng, _ = epoch_seeds(trainer.config.seed, 0)
            rows = trainer.selection.sampler.sample(rng)
            rng, (torch_seed, aug_seed, miner_seed) = epoch_seeds(trainer.config.seed, 0)
            torch.manual_seed(torch_seed)
            trainer.miner_generator.manual_seed(miner_seed)
            chosen = trainer.selection(
                trainer.miners[trainer.config.miner.label], rng, torch.Generator().manual_seed(aug_seed)
            )
            names = [trainer.data.identities[i] for i in trainer.data.labels[rows]]
            rounds.append((rows, names, trainer.data.fetch(rows, "cpu"), chosen))
        finally:
            trainer.close()
        trainer.folder.close()
    (rows_a, names_a, faces_a, round_a), (rows_b, names_b, faces_b, round_b) = rounds
    np.testing.assert_array_equal(rows_a, rows_b)
    assert names_a == names_b and torch.equal(faces_a, faces_b)
    assert torch.equal(round_a.inputs, round_b.inputs)
    assert int(round_a.mined.num_triplets) > 0
    for field in ("anchors", "positives", "negatives"):
        assert torch.equal(getattr(round_a.mined, field), getattr(round_b.mined, field))

    runs = {mode: train(config(small_cache, tmp_path / mode, mode)) for mode in ("preload", "stream")}
    pre, streamed = (load_checkpoint(runs[m].last_checkpoint) for m in ("preload", "stream"))
    assert pre["history"][0]["trained_triplets"] > 0
    assert pre["history"] and [r["train_loss"] for r in pre["history"]] == [
        r["train_loss"] for r in streamed["history"]
    ]
    assert pre["history"][0]["val_loss"] == streamed["history"][0]["val_loss"] is not None
    for key, value in pre["model"].items():
        assert torch.equal(value, streamed["model"][key]), key
    log = (tmp_path / "stream" / "train.log").read_text()
    assert "faces: streaming" in log and "asked for; 1 reading worker(s)" in log
    assert "faces: preloading" in (tmp_path / "preload" / "train.log").read_text()


def test_resume_of_a_streamed_run_repeats_the_uninterrupted_run(small_cache, tmp_path):
    """Without validation the training source is the split's input itself, which must stay open."""
    plain = {"validation": {"fraction": 0.0}}
    whole = train(config(small_cache, tmp_path / "whole", "stream", num_epochs=2, **plain))
    train(config(small_cache, tmp_path / "split", "stream", num_epochs=1, **plain))
    resumed = train(config(small_cache, tmp_path / "split", "stream", num_epochs=2, **plain), resume="auto")
    assert resumed.resumed_from == tmp_path / "split" / "last.pth" and resumed.epochs == 2
    a, b = load_checkpoint(whole.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_training_on_a_stopped_worker_ends_in_one_error_naming_it(small_cache, tmp_path):
    """A real SIGSTOP to the only reading worker: the run stops after data.worker_timeout_s with one line
    naming the worker, instead of hanging; closing the trainer leaves no worker running."""
    data = {"preload": "stream", "workers": 1, "worker_timeout_s": 1.0}
    run = config(small_cache, tmp_path / "run", "stream", data=data, validation={"fraction": 0.0})
    trainer = Trainer(run, TrainProgress())
    pid = trainer.data.pool.pids[0]
    os.kill(pid, signal.SIGSTOP)
    fallback = threading.Timer(30, os.kill, (pid, signal.SIGKILL))
    fallback.start()
    try:
        with pytest.raises(
            FacetoolError, match=f"face reading worker 0 \\(pid {pid}, stopped\\) gave no answer"
        ):
            trainer.run()
    finally:
        fallback.cancel()
        trainer.close()
        trainer.folder.close()
    assert not Path(f"/proc/{pid}").exists()
    assert config(small_cache, tmp_path, "stream").data.worker_timeout_s >= 60, "a slow disk is not a hang"


def test_older_placement_values_mean_preload_and_bad_ones_are_refused(small_cache, tmp_path):
    assert config(small_cache, tmp_path, "device").data.preload == "preload"
    assert config(small_cache, tmp_path, "host").data.preload == "preload"
    with pytest.raises(ValueError, match="preload"):
        config(small_cache, tmp_path, "disk")


def test_each_rank_keeps_its_share_of_the_training_people(small_cache, tmp_path):
    cfg = config(small_cache, tmp_path, "stream", validation={"fraction": 0.0})
    lines: list[str] = []
    shares = [
        load_training_data(small_cache, cfg, torch.device("cpu"), lines.append, Ranks(r, 2, r))
        for r in (0, 1)
    ]
    try:
        everyone = shares[0].train_identities
        assert len(everyone) == 10 and shares[1].train_identities == everyone
        mine = [share.train.identities for share in shares]
        assert len(mine[0]) == len(mine[1]) == 5 and sorted(mine[0] + mine[1]) == sorted(everyone)
        assert lines[0].startswith("faces: streaming") and "left out 1 identities" in lines[1]
    finally:
        for share in shares:
            share.close()
    with pytest.raises(FacetoolError, match="10 training identities cannot give each of 8 processes"):
        load_training_data(small_cache, cfg, torch.device("cpu"), lines.append, Ranks(0, 8, 0))
