"""Per-epoch training records, kept in the checkpoint and written beside it as history.json."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
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
    `active_triplets` of the trained ones had a positive loss in their step (`active_fraction` of them); None
    in histories written before they were recorded.
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
    active_triplets: int | None = None
    active_fraction: float | None = None

    @property
    def selected_text(self) -> str:
        """ "N triplets, " for an epoch whose miner chose triplets; nothing for a loss that mines none (labels,
        groups), whose triplet count is always 0."""
        return "" if self.miner == "none" else f"{self.triplets} triplets, "

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values, the form history.json and checkpoints store."""
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        """Read a figure by name, as from the stored dict."""
        if key not in _TYPES:
            raise KeyError(key)
        return getattr(self, key)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EpochRecord:
        """A record read back from a checkpoint or history.json; anything malformed is one line naming `where`."""
        if not isinstance(data, dict):
            raise FacetoolError(f"{where} is {type(data).__name__}, not an epoch record")
        values = {}
        for name, allowed in _TYPES.items():
            if name not in data:
                if name in _DEFAULTS:
                    continue
                raise FacetoolError(f"{where} has no {name!r}")
            value = data[name]
            if not _fits(value, allowed):
                raise FacetoolError(f"{where}: {name!r} is {value!r}, not {_describe(allowed)}")
            values[name] = value
        return cls(**values)


def _allowed(hint: Any) -> tuple[type, ...]:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return tuple(type(None) if a is None else a for a in args)


_HINTS = typing.get_type_hints(EpochRecord)
_TYPES = {f.name: _allowed(_HINTS[f.name]) for f in fields(EpochRecord)}
_DEFAULTS = {f.name for f in fields(EpochRecord) if f.default is not MISSING}


def _fits(value: Any, allowed: tuple[type, ...]) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return False
    if isinstance(value, int) and (int in allowed or float in allowed):
        return True
    if isinstance(value, float):
        return float in allowed and math.isfinite(value)
    return any(t not in (int, float, type(None)) and isinstance(value, t) for t in allowed)


def _describe(allowed: tuple[type, ...]) -> str:
    return " or ".join("none" if t is type(None) else f"a finite {t.__name__}" for t in allowed)


def save_history(records: list[EpochRecord] | list[dict[str, Any]], path: Path | str) -> None:
    """Write the history as JSON atomically (a kill never leaves a torn file)."""
    rows = [r.to_dict() if isinstance(r, EpochRecord) else r for r in records]
    text = json.dumps(rows, indent=1, allow_nan=False)
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


def best_epoch(history: list[EpochRecord], key: str) -> int | None:
    """The first epoch reaching the lowest `key` (a later tie is no improvement); None without any value."""
    scored = [(r[key], r.epoch) for r in history if r[key] is not None]
    return min(scored)[1] if scored else None
