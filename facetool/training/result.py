"""What `train` returns: where a finished run left its files and how it went."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind and how it went."""

    run_dir: Path
    epochs: int
    history: list[dict[str, Any]]
    last_checkpoint: Path
    best_checkpoint: Path | None
    train_identities: int
    val_identities: int
    dropped_identities: int
    duration_s: float
    resumed_from: Path | None = None
    plots: list[Path] = field(default_factory=list)
    stopped: str | None = None
