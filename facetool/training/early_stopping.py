"""The `early-stopping` callback: end a run once a validation figure has stopped improving."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.errors import ConfigError
from facetool.training.callbacks import Callback, Trainer
from facetool.training.history import EpochRecord

HIGHER_IS_BETTER = {"val_accuracy": True, "val_loss": False, "train_loss": False}


class EarlyStoppingSettings(StrictModel):
    """What to watch and how long to wait."""

    monitor: Literal["val_accuracy", "val_loss", "train_loss"] = Field(
        "val_accuracy", description="The epoch figure watched."
    )
    patience: int = Field(5, ge=1, description="Epochs without improvement before the run stops.")
    min_delta: float = Field(0.0, ge=0.0, description="The least change that counts as an improvement.")


class EarlyStopping(Callback):
    """Stops the run after `patience` epochs in which `monitor` did not beat its best by `min_delta`.

    It reads the whole history at every epoch, so a resumed run counts the epochs before the resume too.
    """

    name = "early-stopping"
    description = "Stop once a validation figure has not improved for `patience` epochs."
    Settings = EarlyStoppingSettings

    def on_train_start(self, trainer: Trainer) -> None:
        if self.settings.monitor.startswith("val_") and not trainer.validator.active:
            raise ConfigError(
                f"callbacks.early-stopping.monitor = {self.settings.monitor} needs validation: set "
                "validation.fraction above 0 or validation.pairs_file"
            )

    def epochs_without_improvement(self, history: list[EpochRecord]) -> int:
        """Epochs since the best value of `monitor` (ties within min_delta are no improvement)."""
        higher = HIGHER_IS_BETTER[self.settings.monitor]
        best: float | None = None
        waited = 0
        for record in history:
            value = record[self.settings.monitor]
            if value is None:
                waited += 1
                continue
            gain = (value - best if higher else best - value) if best is not None else None
            if gain is None or gain > self.settings.min_delta:
                best, waited = value, 0
            else:
                waited += 1
        return waited

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        waited = self.epochs_without_improvement(trainer.history)
        if waited >= self.settings.patience:
            trainer.request_stop(
                f"early stopping: {self.settings.monitor} did not improve by more than "
                f"{self.settings.min_delta:g} for {waited} epochs"
            )
