"""The `tensorboard` callback: loss, learning rate, triplets, images/s and validation as TensorBoard scalars.

Every scalar is logged at the run's global step (epoch figures at the epoch's last step), so a resumed run
purges the events a killed one wrote past its checkpoint and the curves continue without a fold. Needs the
`tensorboard` package (`pip install 'facetool[tensorboard]'`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.errors import ConfigError
from facetool.training.callbacks import Callback, Step, Trainer
from facetool.training.history import EpochRecord

EPOCH_SCALARS = {
    "train_loss": "epoch/train_loss",
    "val_loss": "epoch/val_loss",
    "val_accuracy": "epoch/val_accuracy",
    "learning_rate": "epoch/learning_rate",
    "triplets": "epoch/triplets",
    "active_fraction": "epoch/active_fraction",
    "images_per_s": "epoch/images_per_s",
    "time_s": "epoch/time_s",
}


class TensorBoardSettings(StrictModel):
    """Where and how often."""

    log_dir: str = Field(
        "tensorboard", pattern=r"^[\w][\w.-]*$", description="Folder in the run folder for the event files."
    )
    every_n_steps: int = Field(10, ge=1, description="Log the step scalars every this many steps.")


class TensorBoardLogger(Callback):
    """Writes TensorBoard event files in the run folder (rank 0)."""

    name = "tensorboard"
    description = "Loss, learning rate, triplets, images/s and validation as TensorBoard scalars."
    Settings = TensorBoardSettings

    def __init__(self, settings: TensorBoardSettings | None = None) -> None:
        super().__init__(settings)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "callback 'tensorboard' needs the tensorboard package: pip install 'facetool[tensorboard]'"
            ) from None
        self._writer_class = SummaryWriter
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.ranks.main:
            done = trainer.epoch * trainer.config.epoch_size
            self.writer = self._writer_class(
                str(trainer.run_dir / self.settings.log_dir), purge_step=done + 1 if done else None
            )

    def on_round(self, trainer: Trainer, stats: dict[str, Any]) -> None:
        self._round = stats

    def on_step(self, trainer: Trainer, step: Step) -> None:
        if self.writer is None or step.global_step % self.settings.every_n_steps:
            return
        if step.loss is not None:
            self.writer.add_scalar("train/loss", step.loss, step.global_step)
        self.writer.add_scalar("train/learning_rate", step.lr, step.global_step)
        self.writer.add_scalar("train/images_per_s", step.images_per_s, step.global_step)
        round_stats = getattr(self, "_round", None)
        if round_stats is not None:
            self.writer.add_scalar("train/round_triplets", round_stats["triplets"], step.global_step)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if self.writer is None:
            return
        step = record.epoch * trainer.config.epoch_size
        for key, tag in EPOCH_SCALARS.items():
            value = record[key]
            if value is not None:
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
