"""The callback protocol on real training runs of LFW crops: a plugin callback sees every event and stops a
run; the shipped loggers write what the history says; early stopping stops when the figure stalls."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from plugin_helpers import plugin_site

from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, PluginError
from facetool.training.callbacks import Callback
from facetool.training.early_stopping import EarlyStopping, EarlyStoppingSettings
from facetool.training.history import EpochRecord
from facetool.training.loop import train

RECORDER = """
import json
from pathlib import Path
from facetool.config.base import StrictModel
from facetool.training.callbacks import Callback

class Settings(StrictModel):
    out: str
    stop_after: int = 0

class Recorder(Callback):
    '''Writes every event it sees to a JSON-lines file.'''
    Settings = Settings

    def _write(self, *row):
        with Path(self.settings.out).open("a") as f:
            f.write(json.dumps(row) + "\\n")

    def on_train_start(self, trainer):
        self._write("train_start", trainer.epoch)

    def on_round(self, trainer, stats):
        self._write("round", stats["epoch"], stats["round"], stats["triplets"])

    def on_step(self, trainer, step):
        self._write("step", step.epoch, step.batch, step.global_step, step.lr)

    def on_nonfinite(self, trainer, event):
        self._write("nonfinite", event.epoch, event.count, event.policy)

    def on_epoch_end(self, trainer, record):
        self._write("epoch_end", record.epoch, len(trainer.history))
        if self.settings.stop_after and record.epoch >= self.settings.stop_after:
            trainer.request_stop(f"recorder saw {record.epoch} epochs")

    def on_train_end(self, trainer):
        self._write("train_end", trainer.epoch, trainer.failed)
"""


def tiny(cache: Path, run_dir: Path, **changes) -> TrainConfig:
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "test-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 3, "num_epochs": 2, "people_per_batch": 6,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1,
        "validation": {"fraction": 0.0}, **changes,
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


def read_events(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_plugin_callback_from_the_config_sees_every_event_and_stops_the_run(small_cache, tmp_path):
    events_file = tmp_path / "events.jsonl"
    with plugin_site(tmp_path / "site") as install:
        install(
            "recorder-cb",
            {"facetool.callbacks": {"recorder": "recorder_cb:Recorder"}},
            {"recorder_cb": RECORDER},
        )
        config = tiny(
            small_cache,
            tmp_path / "run",
            num_epochs=4,
            callbacks={"recorder": {"out": str(events_file), "stop_after": 2}},
        )
        result = train(config)
    events = read_events(events_file)
    kinds = [e[0] for e in events]
    assert kinds[0] == "train_start" and kinds[-1] == "train_end"
    assert events[-1] == ["train_end", 2, False]
    assert result.epochs == 2 and len(result.history) == 2, "the stop request ended the run after epoch 2"
    assert result.stopped == "recorder saw 2 epochs"
    steps = [e for e in events if e[0] == "step"]
    assert [s[3] for s in steps] == list(range(1, 7)), "one step event per step, global steps 1..6"
    assert [(s[1], s[2]) for s in steps] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert [e[1:] for e in events if e[0] == "epoch_end"] == [[1, 1], [2, 2]]
    rounds = [e for e in events if e[0] == "round"]
    assert rounds and all(r[3] >= 0 for r in rounds)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2], "the epoch that asked to stop is checkpointed"
    assert "stopped after epoch 2: recorder saw 2 epochs" in (tmp_path / "run" / "train.log").read_text()


def test_a_callback_sees_nonfinite_batches_before_the_stop_policy(small_cache, tmp_path):
    events_file = tmp_path / "events.jsonl"
    with plugin_site(tmp_path / "site") as install:
        install(
            "recorder-cb",
            {"facetool.callbacks": {"recorder": "recorder_cb:Recorder"}},
            {"recorder_cb": RECORDER},
        )
        config = tiny(
            small_cache,
            tmp_path / "run",
            loss={"name": "test-overflow", "offset": float("inf")},
            callbacks={"recorder": {"out": str(events_file)}},
        )
        with pytest.raises(Exception, match="non-finite"):
            train(config)
    events = read_events(events_file)
    assert events[[e[0] for e in events].index("nonfinite")][:2] == ["nonfinite", 1]
    assert events[-1][0] == "train_end" and events[-1][2] is True, "train_end fires on failure, flagged"


def test_plugin_settings_are_validated_by_the_plugins_model_before_any_work(small_cache, tmp_path):
    with plugin_site(tmp_path / "site") as install:
        install(
            "recorder-cb",
            {"facetool.callbacks": {"recorder": "recorder_cb:Recorder"}},
            {"recorder_cb": RECORDER},
        )
        config = tiny(small_cache, tmp_path / "run", callbacks={"recorder": {"out": "x", "every": 3}})
        with pytest.raises(ConfigError, match=r"callbacks\.recorder\.every.*callback 'recorder'"):
            train(config)
    assert not (tmp_path / "run").exists(), "a refused start leaves no run folder"
    with pytest.raises(PluginError, match="unknown callback 'nonesuch'"):
        train(tiny(small_cache, tmp_path / "run2", callbacks=["nonesuch"]))


def test_python_callbacks_are_called_and_a_failing_one_is_named(small_cache, tmp_path):
    class Boom(Callback):
        name = "boom"

        def on_epoch_end(self, trainer, record):
            raise RuntimeError("disk on fire")

    with pytest.raises(
        PluginError, match="callback 'boom' failed in on_epoch_end: RuntimeError: disk on fire"
    ):
        train(tiny(small_cache, tmp_path / "run"), callbacks=[Boom()])


def test_csv_and_tensorboard_loggers_write_what_the_history_holds(small_cache, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    config = tiny(
        small_cache,
        run,
        validation={"fraction": 0.25, "num_pairs": 40},
        callbacks={"csv": {}, "tensorboard": {"every_n_steps": 1}},
    )
    result = train(config)
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [float(r["train_loss"]) for r in rows] == [h["train_loss"] for h in result.history]
    assert [float(r["val_accuracy"]) for r in rows] == [h["val_accuracy"] for h in result.history]

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "epoch/train_loss", "epoch/val_accuracy"} <= tags
    assert [e.step for e in events.Scalars("train/learning_rate")] == list(range(1, 7))
    epoch_loss = events.Scalars("epoch/train_loss")
    assert [e.step for e in epoch_loss] == [3, 6]
    assert [e.value for e in epoch_loss] == pytest.approx([h["train_loss"] for h in result.history], rel=1e-6)
    val = [e.value for e in events.Scalars("epoch/val_accuracy")]
    assert val == pytest.approx([h["val_accuracy"] for h in result.history], rel=1e-6)


def test_logger_settings_keep_files_inside_the_run_folder(small_cache, tmp_path):
    with pytest.raises(ConfigError, match=r"callbacks\.csv\.filename"):
        train(tiny(small_cache, tmp_path / "run", callbacks={"csv": {"filename": "../outside.csv"}}))
    with pytest.raises(ConfigError, match=r"callbacks\.tensorboard\.log_dir"):
        train(tiny(small_cache, tmp_path / "run", callbacks={"tensorboard": {"log_dir": "/tmp/x"}}))


def record(epoch: int, val_accuracy: float | None) -> EpochRecord:
    return EpochRecord(
        epoch=epoch, train_loss=0.5, val_loss=None, val_accuracy=val_accuracy, val_accuracy_std=None,
        learning_rate=0.1, rounds=1, batches=1, skipped_batches=0, anchor_positive_pairs=1, triplets=1,
        trained_triplets=1, valid_negative_fraction=1.0, images=3, images_per_s=1.0, time_s=1.0,
    )  # fmt: skip


def brute_force_wait(values: list[float | None], min_delta: float) -> int:
    """Epochs since the last epoch that beat every earlier value by more than min_delta (None never does)."""
    last_best, best = -1, None
    for i, v in enumerate(values):
        if v is not None and (best is None or v - best > min_delta):
            last_best, best = i, v
    return len(values) - 1 - last_best


@pytest.mark.parametrize("min_delta", [0.0, 0.01])
def test_early_stopping_counts_epochs_without_improvement_like_a_brute_force_count(min_delta):
    values = [0.60, 0.65, 0.655, None, 0.64, 0.70, 0.70, 0.705, 0.69]
    stopper = EarlyStopping(EarlyStoppingSettings(min_delta=min_delta))
    for n in range(1, len(values) + 1):
        history = [record(i + 1, v) for i, v in enumerate(values[:n])]
        assert stopper.epochs_without_improvement(history) == brute_force_wait(values[:n], min_delta)


def test_early_stopping_ends_a_real_run_and_needs_validation(small_cache, tmp_path):
    config = tiny(
        small_cache,
        tmp_path / "run",
        num_epochs=5,
        callbacks={"early-stopping": {"monitor": "train_loss", "patience": 1, "min_delta": 1e9}},
    )
    result = train(config)
    assert result.epochs == 2 and result.stopped.startswith("early stopping: train_loss did not improve")
    with pytest.raises(ConfigError, match="monitor = val_accuracy needs validation"):
        train(tiny(small_cache, tmp_path / "run2", callbacks=["early-stopping"]))
    assert not (tmp_path / "run2").exists(), "a callback that refuses the run leaves no run folder"
