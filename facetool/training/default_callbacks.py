"""The callbacks every run has: train.log lines, the checkpoint files, and the plots at the end (rank 0)."""

from __future__ import annotations

from pathlib import Path

from facetool.errors import FacetoolError
from facetool.models.checkpoint import checkpoint_bytes
from facetool.training.callbacks import Callback, Trainer
from facetool.training.history import EpochRecord, best_epoch


class EpochLog(Callback):
    """One train.log line per epoch."""

    name = "log"

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        trainer.log(
            f"epoch {record.epoch}/{trainer.config.num_epochs}: train loss {record.train_loss}, "
            f"val loss {record.val_loss}, val accuracy {record.val_accuracy}, "
            f"lr {record.learning_rate:.4g}, {record.selected_text}"
            f"{record.skipped_batches} skipped batches, {record.images_per_s:.1f} img/s",
            show=False,
        )


class Checkpoints(Callback):
    """last.pth every epoch, best.pth when the score improved (unless a callback with `chooses_best` keeps it,
    as `verification` with `best_by` does), the periodic copy, history.json (rank 0)."""

    name = "checkpoints"

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if not trainer.ranks.main:
            return
        chosen_elsewhere = any(getattr(cb, "chooses_best", False) for cb in trainer.callbacks.items)
        best = not chosen_elsewhere and best_epoch(trainer.history, trainer.score_key) == record.epoch
        trainer.folder.save_epoch(
            checkpoint_bytes(trainer.checkpoint()),
            trainer.epoch,
            best=best,
            periodic=trainer.epoch % trainer.config.checkpoint_every == 0,
            history=trainer.history,
        )


class Plots(Callback):
    """Loss, learning-rate, triplet and accuracy curves as PNG once a run ends well (rank 0)."""

    name = "plots"

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[Path] = []

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.failed or not trainer.ranks.main:
            return
        from facetool.training.plots import plot_history

        try:
            self.paths = plot_history([r.to_dict() for r in trainer.history], trainer.run_dir)
        except FacetoolError as exc:
            trainer.log(f"plots not written: {exc}")
