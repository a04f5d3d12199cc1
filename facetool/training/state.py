"""Training state beyond the weights: per-epoch seeds, and checking a checkpoint's training fields before any of
them is loaded, so a malformed one is one line naming the file and the field.

No random state is saved: every draw of an epoch comes from generators seeded by (seed, epoch) when it starts
(`epoch_seeds`: people sampling, augmentation, the miner's generator, and the global torch generator that
dropout and any loss or backbone plugin draw from), so a run resumed at an epoch boundary repeats the
uninterrupted one without it. The `rng` field that older checkpoints carry is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from facetool.config.train import LossConfig
from facetool.errors import FacetoolError, UsageError
from facetool.training.history import EpochRecord


def epoch_seeds(seed: int, epoch: int) -> tuple[np.random.Generator, list[int]]:
    """The epoch's sampling generator and three torch seeds (dropout, augmentation, miner)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(3, dtype=np.uint64)
    return np.random.default_rng([seed, epoch, 1]), [int(s >> 1) for s in state]


def _one_line(exc: Exception) -> str:
    """The whole message of `exc` on one line (torch's load errors span several), or its type without one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _field_error(path: Path, field: str, problem: str) -> FacetoolError:
    return FacetoolError(f"{path}: checkpoint field {field!r} {problem}; training cannot resume from it")


def check_training_fields(path: Path, ck: dict[str, Any]) -> tuple[int, list[EpochRecord]]:
    """The epoch and typed history of a checkpoint to resume from, after checking every training field."""
    epoch = ck.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _field_error(path, "epoch", f"is {epoch!r}, not a whole number >= 0")
    history = ck.get("history")
    if not isinstance(history, list):
        raise _field_error(path, "history", f"is {type(history).__name__}, not a list of epoch records")
    records = [
        EpochRecord.from_dict(item, f"{path}: checkpoint field 'history[{i}]'")
        for i, item in enumerate(history)
    ]
    if [r.epoch for r in records] != list(range(1, epoch + 1)):
        raise _field_error(path, "history", f"does not hold epochs 1 to {epoch} in order")
    if not isinstance(ck.get("config"), dict):
        raise _field_error(path, "config", "is not a table")
    for field in ("optimizer", "scheduler"):
        value = ck.get(field)
        if value is None:
            raise FacetoolError(f"{path}: checkpoint has no {field} state, so training cannot resume from it")
        if not isinstance(value, dict):
            raise _field_error(path, field, f"is {type(value).__name__}, not a state table")
    return epoch, records


def load_field(path: Path, field: str, load: Any, state: Any) -> None:
    """Call `load(state)` (a load_state_dict); a state that does not fit is one line naming the field."""
    try:
        load(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise _field_error(path, field, f"does not fit this run ({_one_line(exc)})") from None


def check_same_loss(path: Path, stored: dict[str, Any], loss: LossConfig) -> None:
    """Refuse to resume under another loss than the checkpoint's config names (`triplet` when it names none):
    the loss's state (a class-based loss's centres) and the epochs trained belong to that loss."""
    try:
        before = LossConfig.model_validate(stored.get("loss", LossConfig().name)).name
    except ValidationError:
        raise _field_error(path, "config.loss", "is not a loss name or table") from None
    if before != loss.name:
        raise UsageError(
            f"{path}: the run was trained with loss {before!r}, this one asks for {loss.name!r}; a resumed run "
            f"keeps its loss (set loss = {before!r}), or start a new run in another folder or with --overwrite"
        )
