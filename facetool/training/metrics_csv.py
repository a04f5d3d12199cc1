"""The `csv` callback: every epoch's figures as one row of a CSV file in the run folder, for spreadsheets."""

from __future__ import annotations

import csv
import io
from dataclasses import fields

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.files import atomic_write_text
from facetool.training.callbacks import Callback, Trainer
from facetool.training.history import EpochRecord

COLUMNS = [f.name for f in fields(EpochRecord)]


class CsvSettings(StrictModel):
    """Where the rows go."""

    filename: str = Field(
        "metrics.csv", pattern=r"^[\w][\w.-]*\.csv$", description="File name in the run folder."
    )


class CsvLogger(Callback):
    """Writes the run's history as CSV after every epoch (the whole file, atomically, so a resume stays whole)."""

    name = "csv"
    description = "Every epoch's figures as a row of metrics.csv in the run folder."
    Settings = CsvSettings

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if not trainer.ranks.main:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in trainer.history:
            writer.writerow({k: "" if v is None else v for k, v in row.to_dict().items()})
        atomic_write_text(trainer.run_dir / self.settings.filename, out.getvalue())
