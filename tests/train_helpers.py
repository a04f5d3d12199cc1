"""Helpers shared by the training tests (tests/train, tests/losses)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from cache_helpers import write_people_cache
from torch.optim.optimizer import register_optimizer_step_pre_hook

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


class StepRates(TrainProgress):
    """The learning rate of every real optimizer step, per 1-based epoch: `rates[epoch]` lists the
    `param_groups[0]["lr"]` that each `step()` of that epoch ran with.

    Inside `observing()` every optimizer step is seen through torch's global step pre-hook. Once the training
    loop has a per-step callback, that callback can call `stepped` instead. `stop_after` interrupts the run
    (as Ctrl-C would) once that epoch has been checkpointed.
    """

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.rates: dict[int, list[float]] = {}
        self._steps: list[float] = []

    def stepped(self, optimizer: torch.optim.Optimizer, *_: object) -> None:
        self._steps.append(float(optimizer.param_groups[0]["lr"]))

    @contextmanager
    def observing(self) -> Iterator[StepRates]:
        handle = register_optimizer_step_pre_hook(self.stepped)
        try:
            yield self
        finally:
            handle.remove()

    def epoch_end(self, record) -> None:
        self.rates[record.epoch], self._steps = self._steps, []
        if record.epoch == self.stop_after:
            raise KeyboardInterrupt
