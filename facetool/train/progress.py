"""Reporting a training run as it goes: a silent base class and a rich progress display."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from facetool.train.history import EpochRecord


class TrainProgress:
    """Callbacks of the training loop; every method is a no-op so subclasses override what they show."""

    def start(self, *, start_epoch: int, num_epochs: int, epoch_size: int) -> None: ...

    def message(self, text: str) -> None: ...

    def round(self, stats: dict[str, Any]) -> None: ...

    def batch(
        self, *, epoch: int, batch: int, loss: float | None, images_per_s: float, lr: float
    ) -> None: ...

    def epoch_end(self, record: EpochRecord) -> None: ...

    def finish(self) -> None: ...


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class RichProgress(TrainProgress):
    """Bars for epochs and batches with loss, images/s, triplets per round and learning rate.

    On a non-terminal console the bars are off and one line per epoch is printed instead.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=not self.live,
        )
        self._epochs: Any = None
        self._batches: Any = None
        self._triplets = 0

    def start(self, *, start_epoch: int, num_epochs: int, epoch_size: int) -> None:
        self._progress.start()
        self._epochs = self._progress.add_task("epochs", total=num_epochs, completed=start_epoch, info="")
        self._batches = self._progress.add_task("batches", total=epoch_size, info="")

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def round(self, stats: dict[str, Any]) -> None:
        self._triplets = stats["triplets"]

    def batch(self, *, epoch: int, batch: int, loss: float | None, images_per_s: float, lr: float) -> None:
        info = (
            f"loss {_fmt(loss, '.4f')}  {images_per_s:,.0f} img/s  "
            f"triplets/round {self._triplets}  lr {lr:.3g}"
        )
        self._progress.update(self._batches, completed=batch, info=info, description=f"epoch {epoch + 1}")

    def epoch_end(self, record: EpochRecord) -> None:
        self._progress.update(self._epochs, completed=record.epoch)
        self._progress.reset(self._batches)
        self.console.print(
            f"epoch {record.epoch}: train loss {_fmt(record.train_loss, '.4f')}, "
            f"val loss {_fmt(record.val_loss, '.4f')}, val accuracy {_fmt(record.val_accuracy, '.4f')}, "
            f"lr {record.learning_rate:.3g}, {record.triplets} triplets, "
            f"{record.images_per_s:,.1f} img/s, {record.time_s:.1f} s",
            highlight=False,
            soft_wrap=True,
        )

    def finish(self) -> None:
        self._progress.stop()
