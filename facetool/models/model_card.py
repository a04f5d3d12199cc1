"""Model cards: the JSON file beside an exported model that says how to feed it and how far to trust it.

A card is `<model file name>.json` (`model.onnx.json`, `model.safetensors.json`). It names the backbone, the
input (size, RGB, NCHW, (x - 127.5) / 128), the face-crop settings the model was trained on, the training
recipe and, when an eval report was given, the verification threshold with the accuracy it was measured with.
It also holds the SHA-256 of its model file, so a card is never paired with another file by mistake.

Every card is checked against `card_schema.ModelCard` when written and when read, and against what its model
file says about itself (the ONNX graph's input, the safetensors metadata). Cards hold names, not the exporting
machine's paths.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from facetool import __version__
from facetool.config.base import format_validation_error
from facetool.config.detect import DetectConfig
from facetool.errors import ConfigError, FacetoolError, ModelFileError, UsageError
from facetool.files import read_text_limited
from facetool.models.backbone import build_backbone
from facetool.models.card_schema import CARD_FORMAT, CARD_VERSION, ModelCard, Resize, Verification

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
SUFFIX_FORMATS = {".onnx": "onnx", ".safetensors": "safetensors"}
# What a .safetensors file written by export records about itself, checked against its card on loading.
SAFETENSORS_META = ("image_size", "embedding_dim")


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
    distance and flip setting they belong to, and the accuracy measured with them (checked as a card's)."""
    try:
        thresholds = [float(t) for t in report["fold_threshold"]]
        entry = {
            "threshold": sum(thresholds) / len(thresholds),
            "distance": report["distance"],
            "flip": report["flip"],
            "accuracy": float(report["accuracy"]),
            "accuracy_std": float(report["accuracy_std"]),
            "protocol": str(report.get("protocol", "")),
            "pairs_file": Path(str(report.get("pairs_file", ""))).name,
            "num_pairs": int(report.get("num_pairs", 0)),
            "report": Path(source).name,
        }
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ModelFileError(
            f"{source}: not a facetool eval report.json ({type(exc).__name__}: {exc})"
        ) from None
    try:
        return Verification.model_validate(entry).model_dump()
    except ValidationError as exc:
        raise ModelFileError(
            format_validation_error(exc, f"{source}: eval report, as the card's verification")
        ) from None


def make_card(
    *,
    model_file: Path,
    sha256: str,
    model_format: str,
    backbone: Mapping[str, Any],
    face_crop: Mapping[str, Any],
    training: Mapping[str, Any] | None,
    verification: Mapping[str, Any] | None,
    export_check: Mapping[str, Any] | None = None,
    train_identities: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Assemble and check the card of the model file `model_file` whose bytes hash to `sha256`.

    FacetoolError (naming the key) when a value does not fit the card's schema, so no card is written that
    a reader would refuse.
    """
    card = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "facetool_version": __version__,
        "model_file": model_file.name,
        "model_format": model_format,
        "sha256": sha256,
        "backbone": dict(backbone),
        "input": {**INPUT_SPEC, "image_size": backbone["image_size"], "resize": Resize().model_dump()},
        "output": {"name": "embedding", "size": backbone["embedding_dim"], "l2_normalized": True},
        "face_crop": dict(face_crop),
        "training": dict(training) if training is not None else None,
        "verification": dict(verification) if verification is not None else None,
        "export_check": dict(export_check) if export_check is not None else None,
        "train_identities": list(train_identities) if train_identities is not None else None,
    }
    try:
        return ModelCard.model_validate(card).model_dump(mode="json")
    except ValidationError as exc:
        raise FacetoolError(format_validation_error(exc, f"{card_path(model_file)}: model card")) from None


def card_bytes(card: Mapping[str, Any]) -> bytes:
    """The card as strict JSON (never NaN or Infinity), UTF-8, as `export` writes it."""
    try:
        return (json.dumps(card, indent=2, allow_nan=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise FacetoolError(f"model card is not plain JSON data ({exc})") from None


def read_card(model_path: Path | str) -> dict[str, Any]:
    """Read and check the card beside `model_path`: every field's type and range (`card_schema.ModelCard`), its
    format against the file's suffix and its SHA-256 against the file. ModelFileError naming the card and the
    key otherwise. Returns the checked card (defaults of fields older cards lack filled in)."""
    model_path = Path(model_path)
    path = card_path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model card not found (export writes it beside {model_path.name})")
    try:
        raw = json.loads(read_text_limited(path, limit=CARD_LIMIT, what="model card"))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}:{exc.lineno}: model card is not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{path}: not a facetool model card (no format={CARD_FORMAT!r} marker)")
    if raw.get("format_version") != CARD_VERSION:
        raise ModelFileError(f"{path}: model card version {raw.get('format_version')!r} is not supported")
    try:
        card = ModelCard.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        raise ModelFileError(format_validation_error(exc, f"{path}")) from None
    expected = SUFFIX_FORMATS.get(model_path.suffix.lower())
    if card["model_format"] != expected:
        raise ModelFileError(
            f"{path}: model_format: the card says {card['model_format']!r} but {model_path.name} is "
            f"{expected or 'neither onnx nor safetensors'}"
        )
    if card["sha256"] != file_sha256(model_path):
        raise ModelFileError(f"{path}: model card does not belong to {model_path} (SHA-256 differs)")
    return card


def crop_config(face_crop: Mapping[str, Any] | None, detect: DetectConfig | None) -> DetectConfig:
    """How to detect and crop photos for a model: its card's `face_crop` (the training cache's settings), with
    the settings the user gave explicitly (`detect.model_fields_set`) on top; detect's defaults elsewhere.

    Every command that crops for a model (verify, embed, eval of a photo folder) goes through here, so one
    model gives one set of numbers whichever command runs it. The card's detector (with its settings) and
    alignment come along; an explicit `detect.align` other than the card's is a UsageError naming both, so a
    model trained on aligned faces never scores unaligned ones (nor the reverse).
    """
    settings = {key: face_crop[key] for key in (*CROP_KEYS, "model_format") if face_crop and key in face_crop}
    card_align = (face_crop or {}).get("align", "none")
    settings["align"] = card_align
    detector = (face_crop or {}).get("detector") or {}
    if "name" in detector:
        settings["detector"] = {"name": detector["name"], **(detector.get("settings") or {})}
    if detect is not None:
        given = detect.model_fields_set
        if "align" in given and detect.align != card_align:
            raise UsageError(
                f"detect.align = {detect.align!r}, but the model card's face_crop.align is {card_align!r}: "
                "the model scores faces prepared as it was trained; leave detect.align unset"
            )
        settings |= detect.model_dump(include=given)
    return DetectConfig(**settings)


def check_card_input(
    card: Mapping[str, Any],
    model_path: Path,
    *,
    image_size: int | None,
    embedding_dim: int | None,
    what: str,
) -> None:
    """ModelFileError naming the card and the key when the model file's own input size or embedding size (read
    from `what`: the ONNX graph, the safetensors metadata) differs from the card's; None means not recorded."""
    backbone = card["backbone"]
    for key, own in (("image_size", image_size), ("embedding_dim", embedding_dim)):
        if own is not None and own != backbone[key]:
            raise ModelFileError(
                f"{card_path(model_path)}: backbone.{key}: the card says {backbone[key]} but {what} of "
                f"{model_path.name} says {own}"
            )


def load_safetensors_model(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """The embedding network of a `.safetensors` file and its card, in eval mode on the CPU.

    safetensors holds raw tensors only, so loading runs no code from the file. The card's backbone must agree
    with what the file records about itself (`SAFETENSORS_META`, written by export).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    card = read_card(path)
    spec = card["backbone"]
    name, dim, size, settings = spec["name"], spec["embedding_dim"], spec["image_size"], spec["settings"]
    try:
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: not a readable safetensors file ({first})") from None
    recorded = {key: int(meta[key]) if str(meta.get(key, "")).isdigit() else None for key in SAFETENSORS_META}
    check_card_input(card, path, what="the metadata", **recorded)
    try:
        model = build_backbone(
            name, settings, embedding_dim=dim, dropout=0.0, pretrained="none", image_size=size
        )
    except ConfigError as exc:
        raise ModelFileError(f"{card_path(path)}: backbone settings: {exc}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: safetensors weights do not fit backbone {name!r} ({first})") from None
    return model.eval(), card


def safetensors_bytes(model: nn.Module, backbone: Mapping[str, Any]) -> bytes:
    """The network's own tensors (parameters and buffers) as a .safetensors file's bytes, with the input and
    embedding size in its metadata so a card edited afterwards cannot change them unnoticed."""
    from safetensors.torch import save

    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    meta = {"format": "facetool-embedding", "backbone": str(backbone["name"])}
    meta |= {key: str(int(backbone[key])) for key in SAFETENSORS_META}
    return save(state, metadata=meta)
