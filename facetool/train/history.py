"""Per-epoch training records, kept in the checkpoint and written beside it as history.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facetool.errors import FacetoolError
from facetool.files import atomic_write_text


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did; None where a value does not exist (no validation set, no trained batch).

    `miner` chose the epoch's triplets; `triplets` are those it selected, `trained_triplets` those trained on
    (an epoch stops at epoch_size batches); `valid_negative_fraction` is triplets / anchor_positive_pairs;
    `images_per_s` counts trained images over the epoch's training time (selection rounds included,
    validation not); `time_s` includes validation. `skipped_batches` made no update: rounds without a
    triplet and, with on_nonfinite=skip, the `nonfinite_batches` whose loss or gradient was NaN or infinite.
    """

    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    val_accuracy_std: float | None
    learning_rate: float
    rounds: int
    batches: int
    skipped_batches: int
    anchor_positive_pairs: int
    triplets: int
    trained_triplets: int
    valid_negative_fraction: float
    images: int
    images_per_s: float
    time_s: float
    nonfinite_batches: int = 0
    miner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_history(records: list[dict[str, Any]], path: Path | str) -> None:
    """Write the history as JSON atomically (a kill never leaves a torn file)."""
    text = json.dumps(records, indent=1, allow_nan=False)
    atomic_write_text(path, text)


def load_history(path: Path | str) -> list[dict[str, Any]]:
    """Read history.json; a missing or malformed file names itself."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FacetoolError(f"{path}: no training history here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FacetoolError(f"{path}: unreadable training history ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) and "epoch" in r for r in data):
        raise FacetoolError(f"{path}: not a facetool training history (expected a list of epoch records)")
    return data
