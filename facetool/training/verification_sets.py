"""The `verification` callback: score verification packs and pairs files every N epochs, as arcface_torch
validates on lfw.bin, cfp_fp.bin and agedb_30.bin, and optionally choose best.pth by one of them.

Packs are scored by `facetool.evaluation.packs.evaluate_pack` (flip sum, 10 contiguous folds), pairs files
(LFW's format or CSV) on a face cache by `evaluate_on_pairs`: the same code as `facetool eval`, so a figure in
train.log is the figure `eval` gives for that checkpoint. Each scoring is a train.log line and a row of
`verification.json` in the run folder (rewritten whole each time, kept across resumes). With `best_by`, best.pth
is the checkpoint of the epoch with the highest accuracy on that set (the first on ties), instead of the lowest
validation loss.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.data.transforms import embed_faces
from facetool.errors import ConfigError, FacetoolError
from facetool.evaluation.packs import evaluate_pack
from facetool.evaluation.run import EvalReport, evaluate_on_pairs
from facetool.files import atomic_copy, atomic_write_text
from facetool.training.callbacks import Callback, Trainer
from facetool.training.history import EpochRecord

SCORES_FILE = "verification.json"


class VerificationSettings(StrictModel):
    """Which sets to score, how often, and whether one of them chooses best.pth."""

    packs: list[Path] = Field(default_factory=list, description="Verification packs (.bin) to score.")
    pairs: list[Path] = Field(
        default_factory=list, description="Pairs files (LFW's format or CSV) scored on the face cache `data`."
    )
    data: Path | None = Field(None, description="The face cache that holds the images of `pairs`.")
    every: int = Field(1, ge=1, description="Score after every this many epochs (and after the last).")
    best_by: str | None = Field(
        None, description="File name of one of the packs or pairs files: best.pth follows its accuracy."
    )


def _name(path: Path) -> str:
    return path.name


class VerificationSets(Callback):
    """Scores `packs` and `pairs` every `every` epochs; logs them; with `best_by` keeps best.pth by that set."""

    name = "verification"
    description = (
        "Score verification packs and pairs files every N epochs; optionally choose best.pth by one."
    )
    Settings = VerificationSettings

    def __init__(self, settings: StrictModel | None = None) -> None:
        super().__init__(settings)
        self.scores: list[dict[str, Any]] = []

    @property
    def chooses_best(self) -> bool:
        """True when best.pth follows one of this callback's sets (the checkpoint callback then leaves it)."""
        return self.settings.best_by is not None

    def on_train_start(self, trainer: Trainer) -> None:
        s = self.settings
        names = [_name(p) for p in (*s.packs, *s.pairs)]
        if not names:
            raise ConfigError("callbacks.verification: give packs or pairs to score")
        if s.pairs and s.data is None:
            raise ConfigError("callbacks.verification.pairs needs callbacks.verification.data (a face cache)")
        if s.best_by is not None and s.best_by not in names:
            raise ConfigError(
                f"callbacks.verification.best_by = {s.best_by!r}: not one of {', '.join(names)}"
            )
        for path in (*s.packs, *s.pairs, *([s.data] if s.data else [])):
            if not Path(path).is_file():
                raise ConfigError(f"callbacks.verification: {path}: no such file")
        stored = trainer.run_dir / SCORES_FILE
        if stored.is_file():
            try:
                rows = json.loads(stored.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise FacetoolError(f"{stored}: unreadable verification scores ({exc})") from None
            self.scores = [r for r in rows if isinstance(r, dict) and r.get("epoch", 0) <= trainer.epoch]

    def _reports(self, trainer: Trainer) -> list[tuple[str, EvalReport]]:
        engine = trainer.engine
        embed = functools.partial(
            embed_faces, engine.model, device=engine.device, flip=True, image_size=engine.image_size
        )
        out = [(_name(p), evaluate_pack(embed, p)) for p in self.settings.packs]
        if self.settings.pairs:
            from facetool.cache import open_cache

            with open_cache(self.settings.data) as cache:
                for pairs in self.settings.pairs:
                    report = evaluate_on_pairs(
                        engine.model,
                        cache,
                        pairs,
                        flip=True,
                        device=engine.device,
                        image_size=engine.image_size,
                    )
                    out.append((_name(pairs), report))
        return out

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        last = trainer.epoch >= trainer.config.num_epochs
        if not trainer.ranks.main or (record.epoch % self.settings.every and not last):
            return
        for name, report in self._reports(trainer):
            row = {
                "epoch": record.epoch,
                "set": name,
                "accuracy": report.accuracy,
                "accuracy_std": report.accuracy_std,
                "val": report.val,
                "auc": report.auc,
                "eer": report.eer,
            }
            self.scores.append(row)
            trainer.log(
                f"[{name}] epoch {record.epoch}: accuracy-flip {report.accuracy:.5f} ± {report.accuracy_std:.5f}, "
                f"VAL@FAR={report.far_target:g} {report.val:.5f}, AUC {report.auc:.5f}, EER {report.eer:.5f}"
            )
        atomic_write_text(trainer.run_dir / SCORES_FILE, json.dumps(self.scores, indent=2) + "\n")
        if self.chooses_best:
            mine = [(-r["accuracy"], r["epoch"]) for r in self.scores if r["set"] == self.settings.best_by]
            if min(mine)[1] == record.epoch:
                atomic_copy(trainer.run_dir / "last.pth", trainer.run_dir / "best.pth")
                trainer.log(f"best.pth: epoch {record.epoch}, best accuracy on {self.settings.best_by}")
