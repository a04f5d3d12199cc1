"""The run folder: who may write it (one trainer, only on purpose), what it holds, and keeping it consistent.

The files of a run are written in a fixed order after each epoch: last.pth (the commit point), then its copies
(best.pth, epoch_NNNN.pth), then history.json. A kill between two of these leaves last.pth ahead of the rest;
`repair` rewrites the rest from last.pth when the run resumes, so no epoch goes missing from the history and
no periodic copy is skipped.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facetool.config.base import dump_toml
from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError, UsageError
from facetool.files import (
    atomic_copy,
    atomic_write_bytes,
    atomic_write_text,
    lock_exclusive,
    make_dir,
    remove_stale_temp_files,
    unlock,
)
from facetool.training.history import save_history
from facetool.training.progress import TrainProgress

LOCK_NAME = "train.lock"
CACHE_NAME = "faces.h5"
LAST = "last.pth"
BEST = "best.pth"
HISTORY = "history.json"
CONFIG = "config.toml"
LOG = "train.log"
PLOT_GLOB = "*.png"
EPOCH_GLOB = "epoch_[0-9][0-9][0-9][0-9].pth"


def epoch_copy_name(epoch: int) -> str:
    """The file name of the periodic checkpoint of `epoch`."""
    return f"epoch_{epoch:04d}.pth"


def run_files(run_dir: Path) -> list[Path]:
    """The files of an earlier run in `run_dir` (checkpoints, history, log, config, plots)."""
    if not run_dir.is_dir():
        return []
    named = [run_dir / name for name in (LAST, BEST, HISTORY, LOG, CONFIG)]
    found = [p for p in named if p.is_file()]
    return found + sorted(run_dir.glob(EPOCH_GLOB)) + sorted(run_dir.glob(PLOT_GLOB))


def holds_run(run_dir: Path) -> bool:
    """True when `run_dir` has checkpoints or a history of an earlier run."""
    return any(p.suffix == ".pth" or p.name == HISTORY for p in run_files(run_dir))


def check_fresh_start(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one unless the user asked to resume or overwrite it."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other: continue the run or replace it")
    if not resume and not overwrite and holds_run(run_dir):
        raise UsageError(
            f"{run_dir}: already holds a training run; continue it with --resume auto, "
            "or replace it with --overwrite"
        )


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """The configuration with every path made absolute, so a resume from another folder finds the same files."""

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(os.path.abspath(path))

    validation = config.validation.model_copy(
        update={
            "pairs_file": absolute(config.validation.pairs_file),
            "pairs_data": absolute(config.validation.pairs_data),
        }
    )
    return config.model_copy(
        update={
            "data_dir": absolute(config.data_dir),
            "checkpoint_dir": absolute(config.checkpoint_dir),
            "validation": validation,
        }
    )


class RunLock:
    """An exclusive flock on the run folder's lock file, so two trainers never write one run."""

    def __init__(self, run_dir: Path) -> None:
        self.file = run_dir / LOCK_NAME
        self.fd = lock_exclusive(
            self.file,
            cannot_create=f"{self.file}: cannot create the run lock",
            busy=f"{run_dir}: another facetool train is using this run folder (lock {self.file} is held)",
        )

    def release(self) -> None:
        """Let another trainer in; the lock file stays (removing it would race with a waiting trainer)."""
        if self.fd >= 0:
            unlock(self.fd)
            self.fd = -1


class RunFolder:
    """A run folder opened for writing: created (or reused), locked, and removed again if the start fails."""

    def __init__(self, path: Path, *, main: bool = True) -> None:
        self.path = Path(path)
        self.main = main
        self.created = not self.path.exists()
        make_dir(self.path, "run folder")
        self.lock = RunLock(self.path) if main else None

    def discard_if_new(self) -> None:
        """After a failed start: remove the folder if this run created it, else just unlock it."""
        self.close()
        if self.created and self.main:
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def clear_earlier_run(self) -> list[Path]:
        """--overwrite: remove the files of the earlier run (checkpoints, history, log, config, plots)."""
        removed = run_files(self.path)
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def remove_stale(self) -> list[Path]:
        return remove_stale_temp_files(self.path)

    def write_config(self, config: TrainConfig) -> Path:
        """The resolved configuration as config.toml (atomic)."""
        path = self.path / CONFIG
        atomic_write_text(path, dump_toml(config.model_dump(mode="json")))
        return path

    def save_epoch(self, data: memoryview, epoch: int, *, best: bool, periodic: bool, history: list) -> None:
        """last.pth, then best.pth and epoch_NNNN.pth (links to it, not a second write), then history.json.

        Each is atomic: the checkpoint is serialised and fsynced once, its copies share its data.

        A failed write (disk full, file size limit) leaves the previous file intact and ends the run with one
        line naming the file.
        """
        last = target = self.path / LAST
        copies = [self.path / BEST] if best else []
        if periodic:
            copies.append(self.path / epoch_copy_name(epoch))
        try:
            atomic_write_bytes(last, data)
            for target in copies:
                atomic_copy(last, target)
            target = self.path / HISTORY
            save_history(history, target)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise FacetoolError(
                f"{target}: cannot write after epoch {epoch} ({reason}); the previous file is unchanged "
                f"and --resume auto continues from it"
            ) from None

    def repair(
        self, epoch: int, history: list[dict[str, Any]], best_epoch: int | None, every: int
    ) -> list[str]:
        """Bring the files written after last.pth up to it (a kill may have stopped the run between them).

        Called when resuming from last.pth; returns the names of the copies rewritten.
        """
        last = self.path / LAST
        repaired = []
        periodic = self.path / epoch_copy_name(epoch)
        if epoch % every == 0 and not periodic.is_file():
            atomic_copy(last, periodic)
            repaired.append(periodic.name)
        best = self.path / BEST
        if best_epoch == epoch and (not best.is_file() or not filecmp.cmp(last, best, shallow=False)):
            atomic_copy(last, best)
            repaired.append(best.name)
        save_history(history, self.path / HISTORY)
        return repaired


class RunLog:
    """Appends timestamped lines to train.log and shows them through the progress reporter (rank 0 only)."""

    def __init__(self, path: Path, progress: TrainProgress, enabled: bool = True) -> None:
        self.path = path
        self.progress = progress
        self.enabled = enabled

    def __call__(self, text: str, *, show: bool = True) -> None:
        if not self.enabled:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")
        if show:
            self.progress.message(text)
