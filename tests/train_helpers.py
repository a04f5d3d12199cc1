"""Helpers shared by the training tests (tests/train, tests/losses)."""

from __future__ import annotations

from facetool.train.progress import TrainProgress


class StopAfter(TrainProgress):
    """Interrupts training (as Ctrl-C would) once epoch `epochs` has been checkpointed."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def epoch_end(self, record) -> None:
        if record["epoch"] == self.epochs:
            raise KeyboardInterrupt
