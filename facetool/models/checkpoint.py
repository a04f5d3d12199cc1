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
from pydantic import ValidationError

from facetool import __version__
from facetool.config.base import format_validation_error
from facetool.errors import FacetoolError
from facetool.files import atomic_write_bytes
from facetool.models.card_schema import FaceCrop

FORMAT = "facetool-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "backbone", "config", "epoch", "history")
DIGEST_LENGTH = 16
HEX = frozenset("0123456789abcdef")


def make_checkpoint(
    *,
    model: dict[str, torch.Tensor],
    backbone: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    history: list[dict[str, Any]],
    optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    train_identities: list[str] | None = None,
    loss: dict[str, torch.Tensor] | None = None,
    face_crop: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict with the format markers, in the one layout every reader expects.

    `loss` is the training loss's state (a class-based loss's centres; empty for the triplet loss): it is
    needed to resume and is never part of an exported embedding model, which takes `model` alone.

    `train_identities` are the digests (facetool.identities.identity_digests) of the people the model was
    trained on, so an evaluation can tell when its pairs show people the model has seen. `face_crop` is how
    the training cache's faces were detected, cropped and aligned (a model card's `face_crop`), so a command
    that crops photos for the checkpoint crops them as training did.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "facetool_version": __version__,
        "model": model,
        "backbone": dict(backbone),
        "config": config,
        "epoch": int(epoch),
        "history": history,
        "face_crop": face_crop,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "train_identities": train_identities,
        "loss": loss,
    }


def checkpoint_bytes(obj: dict[str, Any]) -> memoryview:
    """The checkpoint serialised in memory, ready to be written to one or several files."""
    if obj.get("format") != FORMAT:
        raise ValueError("checkpoint_bytes expects a dict built by make_checkpoint")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer()


def save_checkpoint(obj: dict[str, Any], path: Path | str) -> None:
    """Write a checkpoint atomically (temp file, fsync, rename).

    The archive is built in memory first, so a failing disk (full, size limit) surfaces as the OSError of
    the file write, not as an error inside torch's zip writer.
    """
    atomic_write_bytes(path, checkpoint_bytes(obj))


def read_train_identities(path: Path | str, obj: dict[str, Any]) -> tuple[str, ...] | None:
    """The checkpoint's training-identity digests; None when it has none (older checkpoints)."""
    value = obj.get("train_identities")
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(d, str) and len(d) == DIGEST_LENGTH and all(c in HEX for c in d) for d in value
    ):
        raise FacetoolError(
            f"{path}: checkpoint field 'train_identities' is not a list of {DIGEST_LENGTH}-hex-digit digests"
        )
    return tuple(value)


def read_face_crop(path: Path | str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's crop settings, checked as a model card's are; None when it has none (older ones)."""
    value = obj.get("face_crop")
    if value is None:
        return None
    try:
        return FaceCrop.model_validate(value).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise FacetoolError(format_validation_error(exc, f"{path}: checkpoint field 'face_crop'")) from None


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
