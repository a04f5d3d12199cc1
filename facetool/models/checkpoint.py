"""Checkpoint files: atomic writes and safe loading (`torch.load(weights_only=True)`, no unpickling).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so loading it never runs code
from the file. The keys are fixed by docs/design.md.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from facetool import __version__
from facetool.errors import FacetoolError
from facetool.files import atomic_write_bytes

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


def save_checkpoint(obj: dict[str, Any], path: Path | str) -> None:
    """Write a checkpoint atomically (temp file, fsync, rename).

    The archive is built in memory first, so a failing disk (full, size limit) surfaces as the OSError of
    the file write, not as an error inside torch's zip writer.
    """
    if obj.get("format") != FORMAT:
        raise ValueError("save_checkpoint expects a dict built by make_checkpoint")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


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
