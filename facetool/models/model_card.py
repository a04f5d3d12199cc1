"""Model cards: the JSON file beside an exported model that says how to feed it and how far to trust it.

A card is `<model file name>.json` (`model.onnx.json`, `model.safetensors.json`). It names the backbone, the
input (size, RGB, NCHW, (x - 127.5) / 128), the face-crop settings the model was trained on, the training
recipe and, when an eval report was given, the verification threshold with the accuracy it was measured with.
It also holds the SHA-256 of its model file, so a card is never paired with another file by mistake.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facetool import __version__
from facetool.errors import ModelFileError
from facetool.files import read_text_limited
from facetool.models.backbone import build_backbone

CARD_FORMAT = "facetool-model-card"
CARD_VERSION = 1
CARD_LIMIT = 4 * 1024 * 1024
INPUT_SPEC = {
    "layout": "NCHW",
    "channels": "RGB",
    "dtype": "float32",
    "normalization": "(x - 127.5) / 128",
    "mean": 127.5,
    "divisor": 128.0,
}
CROP_KEYS = ("threshold", "select", "margin", "image_size")
BACKBONE_KEYS = ("name", "embedding_dim", "image_size")


def card_path(model_path: Path | str) -> Path:
    """Where the card of `model_path` lives: beside it, its file name plus `.json`."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verification_from_report(report: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The card's `verification` entry from an eval report.json: the mean of the fold thresholds, the
    distance and flip setting they belong to, and the accuracy measured with them."""
    try:
        thresholds = [float(t) for t in report["fold_threshold"]]
        entry = {
            "threshold": sum(thresholds) / len(thresholds),
            "distance": str(report["distance"]),
            "flip": bool(report["flip"]),
            "accuracy": float(report["accuracy"]),
            "accuracy_std": float(report["accuracy_std"]),
            "protocol": str(report.get("protocol", "")),
            "pairs_file": str(report.get("pairs_file", "")),
            "num_pairs": int(report.get("num_pairs", 0)),
            "report": source,
        }
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ModelFileError(
            f"{source}: not a facetool eval report.json ({type(exc).__name__}: {exc})"
        ) from None
    if entry["distance"] not in ("euclidean", "cosine"):
        raise ModelFileError(f"{source}: unknown distance {entry['distance']!r}")
    return entry


def make_card(
    *,
    model_file: Path,
    model_format: str,
    backbone: Mapping[str, Any],
    face_crop: Mapping[str, Any],
    training: Mapping[str, Any] | None,
    verification: Mapping[str, Any] | None,
    export_check: Mapping[str, Any] | None = None,
    train_identities: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Assemble the card of a finished model file (hashed here, so call it after the file is in place)."""
    return {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "facetool_version": __version__,
        "model_file": model_file.name,
        "model_format": model_format,
        "sha256": file_sha256(model_file),
        "backbone": dict(backbone),
        "input": {**INPUT_SPEC, "image_size": int(backbone["image_size"])},
        "output": {"name": "embedding", "size": int(backbone["embedding_dim"]), "l2_normalized": True},
        "face_crop": dict(face_crop),
        "training": dict(training) if training is not None else None,
        "verification": dict(verification) if verification is not None else None,
        "export_check": dict(export_check) if export_check is not None else None,
        "train_identities": list(train_identities) if train_identities is not None else None,
    }


def read_card(model_path: Path | str) -> dict[str, Any]:
    """Read and check the card beside `model_path`; ModelFileError naming the card when missing or unusable,
    or when it belongs to another file (SHA-256 mismatch)."""
    model_path = Path(model_path)
    path = card_path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model card not found (export writes it beside {model_path.name})")
    try:
        card = json.loads(read_text_limited(path, limit=CARD_LIMIT, what="model card"))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}:{exc.lineno}: model card is not valid JSON ({exc.msg})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{path}: not a facetool model card (no format={CARD_FORMAT!r} marker)")
    if card.get("format_version") != CARD_VERSION:
        raise ModelFileError(f"{path}: model card version {card.get('format_version')!r} is not supported")
    spec = card.get("backbone")
    if not isinstance(spec, dict) or any(key not in spec for key in BACKBONE_KEYS):
        raise ModelFileError(f"{path}: model card 'backbone' needs {', '.join(BACKBONE_KEYS)}")
    crop = card.get("face_crop")
    if not isinstance(crop, dict) or any(key not in crop for key in CROP_KEYS):
        raise ModelFileError(f"{path}: model card 'face_crop' needs {', '.join(CROP_KEYS)}")
    if card.get("sha256") != file_sha256(model_path):
        raise ModelFileError(f"{path}: model card does not belong to {model_path} (SHA-256 differs)")
    return card


def load_safetensors_model(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """The embedding network of a `.safetensors` file and its card, in eval mode on the CPU.

    safetensors holds raw tensors only, so loading runs no code from the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    card = read_card(path)
    spec = card["backbone"]
    try:
        name, dim, size = str(spec["name"]), int(spec["embedding_dim"]), int(spec["image_size"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{card_path(path)}: model card 'backbone' entry is unusable ({exc})") from None
    model = build_backbone(name, embedding_dim=dim, dropout=0.0, pretrained="none", image_size=size)
    try:
        state = load_file(path, device="cpu")
        model.load_state_dict(state)
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: safetensors weights do not fit backbone {name!r} ({first})") from None
    return model.eval(), card


def state_for_export(model: nn.Module) -> dict[str, torch.Tensor]:
    """The network's own tensors (parameters and buffers), contiguous and unshared, as safetensors wants."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
