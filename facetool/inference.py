"""One way to embed faces whatever runs the network: a torch module or an ONNX file in onnxruntime.

`Embedder.__call__(faces_uint8_nhwc) -> (N, D) float32` L2-normalised embeddings. Both runtimes share the
input path (`to_input`: resize to the model's input size, (x - 127.5) / 128) and the flip convention of
`facetool.embedding` (sum of the face's and its mirror's embeddings, re-normalised), so they give the same
numbers up to floating-point differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetool.config.detect import DetectConfig
from facetool.config.evaluate import EmbeddingSettings
from facetool.config.export import Runtime
from facetool.data.transforms import to_input
from facetool.device import resolve_device
from facetool.errors import ModelFileError, UsageError
from facetool.models import ModelInfo, load_embedding_model
from facetool.models.export import INPUT_NAME, OUTPUT_NAME, onnx_input_shape, onnx_session
from facetool.models.model_card import CROP_KEYS, card_path, check_card_input, crop_config, read_card

ONNX_SUFFIX = ".onnx"


class Embedder:
    """Faces in, embeddings out; subclasses give `_forward` (float NCHW on `self.device` -> (n, D) tensor).

    `info` says what model runs (backbone, sizes, source, the people it was trained on when recorded);
    `label` names it in errors (its file); `face_crop` is its card's crop settings (None without a card).
    """

    info: ModelInfo
    runtime: str
    device: torch.device = torch.device("cpu")
    label: str = "the model"
    face_crop: dict[str, Any] | None = None
    crops_differ: bool = False

    def __init__(self, *, flip: bool = False, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.flip = flip
        self.batch_size = batch_size

    @property
    def image_size(self) -> int:
        """Side of the model's square input; faces of another size are resized to it."""
        return self.info.image_size

    @property
    def embedding_dim(self) -> int:
        """Length of one embedding."""
        return self.info.embedding_dim

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, faces_uint8_nhwc: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB faces -> (N, D) float32 L2-normalised embeddings.

        ModelFileError naming the model when it gives NaN or inf: such an embedding has no distance to decide by.
        """
        parts = []
        with torch.inference_mode():
            for start in range(0, len(faces_uint8_nhwc), self.batch_size):
                x = to_input(faces_uint8_nhwc[start : start + self.batch_size], self.device, self.image_size)
                out = self._forward(x).float()
                if self.flip:
                    out = out + self._forward(torch.flip(x, dims=[3])).float()
                if not bool(torch.isfinite(out).all()):
                    raise ModelFileError(f"{self.label}: the model gives non-finite embeddings (NaN or inf)")
                parts.append(F.normalize(out, dim=1).cpu())
        if not parts:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return torch.cat(parts).numpy().astype(np.float32, copy=False)


class TorchEmbedder(Embedder):
    """A torch embedding network in eval mode on `device`."""

    runtime = "torch"

    def __init__(
        self,
        model: nn.Module,
        info: ModelInfo,
        *,
        device: str | torch.device = "cpu",
        flip: bool = False,
        batch_size: int = 256,
    ) -> None:
        super().__init__(flip=flip, batch_size=batch_size)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.to(self.device).eval()
        self.info = info

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class OnnxEmbedder(Embedder):
    """An exported ONNX file run by onnxruntime on the CPU; its card gives the input size."""

    runtime = "onnx"

    def __init__(self, path: Path | str, *, flip: bool = False, batch_size: int = 256) -> None:
        super().__init__(flip=flip, batch_size=batch_size)
        self.path = Path(path)
        self.label = str(self.path)
        self.card = read_card(self.path)
        self.face_crop = self.card["face_crop"]
        backbone = self.card["backbone"]
        people = self.card.get("train_identities")
        self.info = ModelInfo(
            backbone=backbone["name"],
            embedding_dim=backbone["embedding_dim"],
            image_size=backbone["image_size"],
            source="onnx",
            train_identities=tuple(people) if isinstance(people, list) else None,
            backbone_settings=backbone["settings"],
        )
        self.session = onnx_session(self.path)
        side, dim = onnx_input_shape(self.session)
        check_card_input(self.card, self.path, image_size=side, embedding_dim=dim, what="the ONNX graph")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0])


class EnsembleEmbedder(Embedder):
    """Several models as one: each face's member embeddings (each with its own input size and flip) are
    concatenated and divided by the root of their count, so the result is unit length and its squared
    distances are the mean of the members'.

    Independently trained networks err differently, so their mean distance ranks pairs better than either
    alone; on a machine with several cores, small models trained side by side get more from the same time
    than one model trained longer. `info.train_identities` is every member's people (None when any member
    does not record them), so a held-out check covers them all.
    """

    def __init__(self, members: Sequence[Embedder]) -> None:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        super().__init__(flip=members[0].flip, batch_size=members[0].batch_size)
        self.members = list(members)
        self.runtime = "+".join(sorted({m.runtime for m in members}))
        self.device = members[0].device
        people = [m.info.train_identities for m in members]
        known = [set(p) for p in people if p is not None]
        self.label = " + ".join(m.label for m in members)
        crops = {_crop_key(m.face_crop): m.face_crop for m in members if m.face_crop is not None}
        self.face_crop = next(iter(crops.values())) if len(crops) == 1 else None
        self.crops_differ = len(crops) > 1
        self.info = ModelInfo(
            backbone=" + ".join(m.info.backbone for m in members),
            embedding_dim=sum(m.embedding_dim for m in members),
            image_size=max(m.image_size for m in members),
            source="ensemble",
            train_identities=tuple(sorted(set().union(*known))) if len(known) == len(people) else None,
        )

    def __call__(self, faces_uint8_nhwc: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB faces -> (N, sum of the members' D) float32 L2-normalised embeddings."""
        parts = [member(faces_uint8_nhwc) for member in self.members]
        return (np.concatenate(parts, axis=1) / np.sqrt(len(parts))).astype(np.float32, copy=False)


def _crop_key(crop: dict[str, Any] | None) -> tuple[Any, ...]:
    crop = crop or {}
    detector = crop.get("detector") or {}
    named = (detector.get("name", "ssd"), repr(sorted((detector.get("settings") or {}).items())))
    return (*(crop.get(key) for key in (*CROP_KEYS, "model_format")), crop.get("align", "none"), *named)


def crop_for(embedder: Embedder, detect: DetectConfig | None) -> DetectConfig:
    """How to detect and crop photos for `embedder`: its card's crop settings, the user's `detect.*` on top
    (`model_card.crop_config`). An ensemble whose cards crop differently needs the crop given explicitly."""
    if embedder.crops_differ:
        given = detect.model_fields_set if detect is not None else set()
        if not {*CROP_KEYS} <= given:
            raise UsageError(
                f"{embedder.label}: the models' cards crop faces differently; set detect.threshold, "
                "detect.select, detect.margin and detect.image_size to choose one crop"
            )
    return crop_config(embedder.face_crop, detect)


def as_one(embedders: Sequence[Embedder]) -> Embedder:
    """The one embedder, or several as an `EnsembleEmbedder`."""
    return embedders[0] if len(embedders) == 1 else EnsembleEmbedder(embedders)


def load_embedder(
    path: Path | str,
    *,
    runtime: Runtime | None = None,
    device: str | torch.device = "auto",
    flip: bool = False,
    batch_size: int = 256,
) -> tuple[Embedder, dict[str, Any] | None]:
    """The embedder of a model file and its card (None when it has none).

    `runtime` None follows the file: `.onnx` runs in onnxruntime, anything `load_embedding_model` reads
    (checkpoint, facenet-pytorch weights, safetensors + card) in torch. `--runtime onnx` needs an .onnx file.
    """
    path = Path(path)
    is_onnx = path.suffix.lower() == ONNX_SUFFIX
    runtime = runtime or ("onnx" if is_onnx else "torch")
    if runtime == "onnx":
        if not is_onnx:
            raise UsageError(f"{path}: runtime onnx needs an .onnx file (make one with `facetool export`)")
        if not path.is_file():
            raise ModelFileError(f"{path}: model file not found")
        embedder = OnnxEmbedder(path, flip=flip, batch_size=batch_size)
        return embedder, embedder.card
    model, info = load_embedding_model(path, "cpu")
    card = read_card(path) if card_path(path).is_file() else None
    embedder = TorchEmbedder(model, info, device=device, flip=flip, batch_size=batch_size)
    embedder.label = str(path)
    embedder.face_crop = card["face_crop"] if card is not None else info.face_crop
    return embedder, card


def embedder_for(
    path: Path | str | Sequence[Path | str], settings: EmbeddingSettings
) -> tuple[Embedder, dict[str, Any] | None]:
    """`load_embedder` with a command's runtime, device, flip and batch size (`eval`, `embed`); several paths
    make an `EnsembleEmbedder` (whose card is None)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    loaded = [
        load_embedder(
            one,
            runtime=settings.runtime,
            device=settings.device,
            flip=settings.flip,
            batch_size=settings.batch_size,
        )
        for one in paths
    ]
    if len(loaded) == 1:
        return loaded[0]
    return EnsembleEmbedder([embedder for embedder, _card in loaded]), None
