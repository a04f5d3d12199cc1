"""`load_embedding_model`: a ready-to-embed network from a facetool checkpoint or a facenet-pytorch weights file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from facetool.config.base import format_validation_error
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, FacetoolError, ModelFileError, PluginError
from facetool.models.backbone import build_backbone
from facetool.models.checkpoint import load_checkpoint, read_face_crop, read_train_identities
from facetool.models.inception import NATIVE_DIM, load_facenet_weights, read_state_dict
from facetool.models.model_card import load_safetensors_model

CHECKPOINT = "facetool-checkpoint"
FACENET_WEIGHTS = "facenet-pytorch"
SAFETENSORS = "safetensors"
FACENET_IMAGE_SIZE = 160
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded: backbone name, embedding size, input image size, `source`, the kind of file
    (`facetool-checkpoint`, `facenet-pytorch`, `safetensors`, or `onnx` for an ONNX file's card), and `train_identities`, the digests of the people a
    facetool checkpoint was trained on (None for facenet-pytorch weights and older checkpoints).
    `backbone_settings` is the backbone plugin's own settings (its `[backbone]` table; empty for none)."""

    backbone: str
    embedding_dim: int
    image_size: int
    source: str
    train_identities: tuple[str, ...] | None = None
    face_crop: dict[str, Any] | None = None
    backbone_settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def backbone_entry(self) -> dict[str, Any]:
        """The backbone as a model card records it: name, settings, embedding and input size."""
        return {
            "name": self.backbone,
            "settings": dict(self.backbone_settings),
            "embedding_dim": self.embedding_dim,
            "image_size": self.image_size,
        }


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def _backbone_spec(path: Path, spec: Any) -> tuple[str, dict[str, Any], int, int, float]:
    """The checkpoint's backbone entry, checked against the bounds of the training configuration: name,
    settings (absent in older checkpoints: none), embedding size, image size, dropout."""
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path}: checkpoint field 'backbone' is {type(spec).__name__}, not a table")
    fields = {"backbone": "name", "embedding_dim": "embedding_dim", "image_size": "image_size"}
    missing = [key for key in fields.values() if key not in spec]
    if missing:
        raise ModelFileError(f"{path}: checkpoint 'backbone' entry is incomplete (no {', '.join(missing)})")
    data = {setting: spec[key] for setting, key in fields.items()}
    data["dropout_prob"] = spec.get("dropout", 0.0)
    settings = spec.get("settings", {})
    if not isinstance(settings, dict):
        raise ModelFileError(
            f"{path}: checkpoint 'backbone' settings are {type(settings).__name__}, not a table"
        )
    try:
        checked = TrainConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ModelFileError(format_validation_error(exc, f"{path}: checkpoint backbone")) from None
    return checked.backbone.name, settings, checked.embedding_dim, checked.image_size, checked.dropout_prob


def _from_checkpoint(path: Path, ckpt: dict[str, Any]) -> tuple[nn.Module, ModelInfo]:
    name, settings, dim, size, dropout = _backbone_spec(path, ckpt["backbone"])
    identities = read_train_identities(path, ckpt)
    face_crop = read_face_crop(path, ckpt)
    try:
        model = build_backbone(
            name, settings, embedding_dim=dim, dropout=dropout, pretrained="none", image_size=size
        )
    except PluginError as exc:
        raise PluginError(f"{path}: checkpoint backbone cannot be built: {exc}") from None
    except ConfigError as exc:
        raise ModelFileError(f"{path}: checkpoint backbone settings: {exc}") from None
    if not isinstance(ckpt["model"], Mapping):
        raise ModelFileError(f"{path}: checkpoint field 'model' is not a table of weights")
    try:
        model.load_state_dict(_strip_wrappers(ckpt["model"]))
    except (RuntimeError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(f"{path}: checkpoint weights do not fit backbone {name!r} ({first})") from None
    return model, ModelInfo(
        name, dim, size, CHECKPOINT, identities, face_crop=face_crop, backbone_settings=settings
    )


def _from_facenet(path: Path) -> tuple[nn.Module, ModelInfo]:
    model = build_backbone("inception_resnet_v1", embedding_dim=NATIVE_DIM, pretrained="none")
    load_facenet_weights(model, _strip_wrappers(read_state_dict(path)), path)
    return model, ModelInfo("inception_resnet_v1", NATIVE_DIM, FACENET_IMAGE_SIZE, FACENET_WEIGHTS)


def check_finite_weights(model: nn.Module, path: Path) -> None:
    """ModelFileError naming the file and the first tensor holding NaN or inf: such a network embeds every face
    as NaN, which would otherwise reach a distance and a verdict."""
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelFileError(f"{path}: weights hold non-finite values (NaN or inf), first in {key!r}")


def load_embedding_model(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a facetool checkpoint, a bare facenet-pytorch InceptionResnetV1 state dict, or an exported
    `.safetensors` file with its model card beside it; eval mode, on `device`.

    Files are read with `torch.load(weights_only=True)`; anything unusable (non-finite weights included) raises
    ModelFileError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if path.suffix.lower() == ".onnx":
        raise ModelFileError(f"{path}: an ONNX model runs in onnxruntime (--runtime onnx), not in torch")
    if path.suffix.lower() == ".safetensors":
        model, card = load_safetensors_model(path)
        spec = card["backbone"]
        identities = card.get("train_identities")
        info = ModelInfo(
            str(spec["name"]),
            int(spec["embedding_dim"]),
            int(spec["image_size"]),
            SAFETENSORS,
            tuple(str(d) for d in identities) if isinstance(identities, list) else None,
            backbone_settings=dict(spec.get("settings") or {}),
        )
        check_finite_weights(model, path)
        return model.to(device).eval(), info
    try:
        ckpt = load_checkpoint(path)
    except FacetoolError as not_checkpoint:
        try:
            model, info = _from_facenet(path)
        except ModelFileError as not_facenet:
            raise ModelFileError(
                f"{not_checkpoint}; nor a facenet-pytorch weights file ({not_facenet})"
            ) from None
    else:
        model, info = _from_checkpoint(path, ckpt)
    check_finite_weights(model, path)
    return model.to(device).eval(), info
