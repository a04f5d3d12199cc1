"""Checkpoint files: atomic writes and safe loading (`torch.load(weights_only=True)`, no unpickling).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so loading it never runs code
from the file. The keys are fixed by docs/design.md.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from facetool import __version__
from facetool.errors import FacetoolError

FORMAT = "facetool-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "backbone", "config", "epoch", "history")


def make_checkpoint(
    *,
    model: dict[str, torch.Tensor],
    backbone: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    history: list[dict[str, Any]],
    optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict with the format markers, in the one layout every reader expects."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "facetool_version": __version__,
        "model": model,
        "backbone": dict(backbone),
        "config": config,
        "epoch": int(epoch),
        "history": history,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "rng": rng,
    }


def make_run_dir(path: Path | str) -> Path:
    """Create a run or output directory; a file (or unwritable place) in the way is one FacetoolError line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FacetoolError(
            f"{path}: exists and is not a directory (give another --checkpoint-dir)"
        ) from None
    except NotADirectoryError:
        raise FacetoolError(f"{path}: a parent of this directory is a file") from None
    except OSError as exc:
        raise FacetoolError(f"{path}: cannot create the directory ({exc.strerror})") from None
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, write: Any) -> None:
    """Call `write(file)` on a temp file beside `path`, fsync it, then rename it over `path`.

    A crash at any moment leaves either the old file or the complete new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temp_files(directory: Path | str) -> list[Path]:
    """Delete temp files an interrupted atomic write left in `directory` (a run killed mid-save); returns them."""
    stale = sorted(Path(directory).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoint(obj: dict[str, Any], path: Path | str) -> None:
    """Write a checkpoint atomically (temp file, fsync, rename).

    The archive is built in memory first, so a failing disk (full, size limit) surfaces as the OSError of
    the file write, not as an error inside torch's zip writer.
    """
    if obj.get("format") != FORMAT:
        raise ValueError("save_checkpoint expects a dict built by make_checkpoint")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, lambda handle: handle.write(buffer.getbuffer()))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a facetool checkpoint safely; anything else raises FacetoolError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FacetoolError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise FacetoolError(f"{path}: not a facetool checkpoint (not a PyTorch archive)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise FacetoolError(
            f"{path}: refused: the file needs unpickling of arbitrary Python objects, "
            "which a facetool checkpoint never does"
        ) from None
    except Exception as exc:
        reason = type(exc).__name__
        raise FacetoolError(f"{path}: not a facetool checkpoint ({reason} while reading it)") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FacetoolError(f"{path}: not a facetool checkpoint (no format={FORMAT!r} marker)")
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise FacetoolError(
            f"{path}: checkpoint format version {version!r} is not supported (expected {FORMAT_VERSION})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        raise FacetoolError(f"{path}: facetool checkpoint is missing {', '.join(missing)}")
    return obj
