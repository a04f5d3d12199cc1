"""Helpers shared by the training tests (tests/training, tests/losses)."""

from __future__ import annotations

import sys
from pathlib import Path

from cache_helpers import write_people_cache

from facetool.training.callbacks import Callback
from facetool.training.progress import TrainProgress

SIZE = 96


def build_lfw_cache(
    lfw_dir: Path, path: Path, *, identities: int = 10, per_identity: int = 6, singles: int = 1
) -> Path:
    """Write a cache of `identities` LFW people with >= 4 images (plus `singles` one-image people)."""
    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())
    counts = {name: len(list((lfw_dir / name).glob("*.jpg"))) for name in names[:400]}
    many = [n for n in names[:400] if counts[n] >= 4][:identities]
    one = [n for n in names[:400] if counts[n] == 1][:singles]
    return write_people_cache(lfw_dir, path, many + one, per_identity, SIZE)


def small_train_command(cache: Path, run_dir: Path, *options: str, settings: dict[str, str]) -> list[str]:
    """`python -m facetool train` on a small people cache: test-cnn at 48 px, 16-d embeddings, batches of 24, no
    validation people, one thread; `options` are further flags, `settings` further `--set KEY=VALUE`s."""
    sets = {"backbone": "test-cnn", "image_size": "48", "embedding_dim": "16", "validation.fraction": "0.0"}
    return [
        sys.executable, "-m", "facetool", "train", "--data", str(cache), "--checkpoint-dir", str(run_dir),
        "--batch-size", "24", "--images-per-person", "6", "--device", "cpu", "--threads", "1", *options,
        *(arg for key, value in {**sets, **settings}.items() for arg in ("--set", f"{key}={value}")),
    ]  # fmt: skip


class StopAfter(TrainProgress):
    """Interrupts training (as Ctrl-C would) once epoch `epochs` has been checkpointed."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer, record) -> None:
        if record["epoch"] == self.epochs:
            raise KeyboardInterrupt


class StepRates(Callback):
    """The learning rate of every training step, per 1-based epoch, as the step events of the callback protocol
    report it: `rates[epoch]` lists the optimizer's `param_groups[0]["lr"]` that each step ran with.
    `stop_after` interrupts the run (as Ctrl-C would) once that epoch has been checkpointed."""

    name = "step-rates"

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.rates: dict[int, list[float]] = {}

    def on_step(self, trainer, step) -> None:
        self.rates.setdefault(step.epoch, []).append(step.lr)

    def on_epoch_end(self, trainer, record) -> None:
        if record.epoch == self.stop_after:
            raise KeyboardInterrupt
