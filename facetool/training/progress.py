"""Reporting a training run as it goes: the display callback (silent base class) and a rich progress display."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from facetool.training.callbacks import Callback, Step, Trainer
from facetool.training.history import EpochRecord


class TrainProgress(Callback):
    """The run's display: a callback that is also shown the run's log lines (`message`); silent here."""

    name = "progress"

    def message(self, text: str) -> None:
        """A line of train.log worth showing."""


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

    def on_train_start(self, trainer: Trainer) -> None:
        config = trainer.config
        self._progress.start()
        self._epochs = self._progress.add_task(
            "epochs", total=config.num_epochs, completed=trainer.epoch, info=""
        )
        self._batches = self._progress.add_task("batches", total=config.epoch_size, info="")

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def on_round(self, trainer: Trainer, stats: dict[str, Any]) -> None:
        self._triplets = stats["triplets"]

    def on_step(self, trainer: Trainer, step: Step) -> None:
        info = (
            f"loss {_fmt(step.loss, '.4f')}  {step.images_per_s:,.0f} img/s  "
            f"{f'triplets/round {self._triplets}  ' if trainer.plan.mines else ''}lr {step.lr:.3g}"
        )
        self._progress.update(
            self._batches, completed=step.batch, info=info, description=f"epoch {step.epoch}"
        )

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self._progress.update(self._epochs, completed=record.epoch)
        self._progress.reset(self._batches)
        self.console.print(
            f"epoch {record.epoch}: train loss {_fmt(record.train_loss, '.4f')}, "
            f"val loss {_fmt(record.val_loss, '.4f')}, val accuracy {_fmt(record.val_accuracy, '.4f')}, "
            f"lr {record.learning_rate:.3g}, {record.selected_text}"
            f"{record.images_per_s:,.1f} img/s, {record.time_s:.1f} s",
            highlight=False,
            soft_wrap=True,
        )

    def on_train_end(self, trainer: Trainer) -> None:
        self._progress.stop()
