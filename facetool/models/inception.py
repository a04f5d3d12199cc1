"""The built-in `inception_resnet_v1` backbone: facenet-pytorch's InceptionResnetV1 as an embedding network.

facenet-pytorch downloads pretrained weights when it is constructed with `pretrained=...`; this wrapper never
lets it. It builds the bare network and loads a weights file itself: the named sets come from facenet-pytorch's
cache folder (`$TORCH_HOME/checkpoints/`), anything else is a path.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from facetool.config.base import StrictModel
from facetool.errors import ModelFileError, UsageError

NATIVE_DIM = 512
FEATURES = 1792
MIN_IMAGE_SIZE = 75
PRETRAINED_FILES: dict[str, str] = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}
NO_PRETRAINED = "none"


def pretrained_path(pretrained: str) -> Path:
    """The weights file for a named set (in facenet-pytorch's cache folder) or a path; ModelFileError if absent."""
    if pretrained in PRETRAINED_FILES:
        from facenet_pytorch.models.inception_resnet_v1 import get_torch_home  # see build_inception_resnet_v1

        path = Path(get_torch_home()) / "checkpoints" / PRETRAINED_FILES[pretrained]
        if not path.is_file():
            raise ModelFileError(
                f"pretrained {pretrained!r}: weights file not found at {path} (facetool never downloads; "
                f"put {PRETRAINED_FILES[pretrained]} there or set TORCH_HOME)"
            )
        return path
    path = Path(pretrained).expanduser()
    if not path.is_file():
        names = ", ".join([NO_PRETRAINED, *PRETRAINED_FILES])
        raise ModelFileError(f"pretrained {pretrained!r}: not one of {names}, and no weights file at {path}")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file, loaded safely; ModelFileError naming the file otherwise."""
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():
            raise ModelFileError(
                f"{path}: refused: not a plain weights file (it needs unpickling of arbitrary Python objects)"
            ) from None
        raise ModelFileError(f"{path}: not a PyTorch weights file (unreadable pickle data)") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelFileError(f"{path}: cannot read weights ({type(exc).__name__}: {first})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: not a state dict of tensors")
    return dict(state)


def load_facenet_weights(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load facenet-pytorch weights, dropping keys that do not apply (the logits layer, a resized head)."""
    own = model.state_dict()
    resized = model.last_linear.out_features != NATIVE_DIM
    skip = ("last_linear.", "last_bn.") if resized else ()
    kept = {k: v for k, v in state.items() if k in own and not k.startswith(skip)}
    missing = [
        k for k in own if k not in kept and not k.startswith(skip) and not k.endswith("num_batches_tracked")
    ]
    if missing:
        raise ModelFileError(
            f"{path}: not InceptionResnetV1 weights ({len(missing)} keys missing, e.g. {missing[0]!r})"
        )
    try:
        model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{path}: weights do not fit InceptionResnetV1 ({first})") from None


def build_inception_resnet_v1(
    settings: StrictModel | None = None,
    *,
    embedding_dim: int = NATIVE_DIM,
    dropout: float = 0.6,
    pretrained: str = NO_PRETRAINED,
    image_size: int = 160,
) -> nn.Module:
    """FaceNet's InceptionResnetV1 (facenet-pytorch), pretrained none, vggface2, casia-webface or a file."""
    if image_size < MIN_IMAGE_SIZE:
        raise UsageError(
            f"image_size {image_size}: inception_resnet_v1 needs at least {MIN_IMAGE_SIZE} pixels (160 is usual)"
        )
    if embedding_dim < 1:
        raise UsageError(f"embedding_dim {embedding_dim}: must be positive")
    from facenet_pytorch import InceptionResnetV1  # imported here: it brings torchvision, 2 s of every start

    model = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout)
    if embedding_dim != NATIVE_DIM:
        model.last_linear = nn.Linear(FEATURES, embedding_dim, bias=False)
        model.last_bn = nn.BatchNorm1d(embedding_dim, eps=0.001, momentum=0.1, affine=True)
    if pretrained != NO_PRETRAINED:
        path = pretrained_path(pretrained)
        load_facenet_weights(model, read_state_dict(path), path)
    return model
