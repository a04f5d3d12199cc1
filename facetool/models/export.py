"""`export_model`: a trained embedding network as an ONNX or safetensors file with a model card beside it.

ONNX files take (batch, 3, S, S) float32 input named `input` (dynamic batch) and give `embedding`,
(batch, D) L2-normalised; each is run with onnxruntime on the CPU against torch before it is written, and
refused when the largest difference exceeds the tolerance. safetensors files hold the embedding network's
tensors only (no optimizer, no classifier head) and load without unpickling.

The model and its card are built in memory, checked, and written as one unit (`atomic_write_together`): both
or neither, whatever fails (a full disk, a read-only folder, a card path that is a folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from facetool.config.detect import DetectConfig
from facetool.config.export import ExportConfig
from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError, ModelFileError, UsageError
from facetool.files import atomic_write_together, check_output_not_input, make_dir, read_text_limited
from facetool.models.checkpoint import read_face_crop
from facetool.models.loading import load_checkpoint, load_embedding_model
from facetool.models.model_card import (
    CROP_KEYS,
    SUFFIX_FORMATS,
    card_bytes,
    card_path,
    make_card,
    read_card,
    safetensors_bytes,
    verification_from_report,
)

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
CHECK_SEED = 0


@dataclass(frozen=True)
class ExportResult:
    """What was written: the model file, its card, the format and (ONNX) the largest difference to torch."""

    path: Path
    card: Path
    model_format: str
    max_abs_diff: float | None


def output_format(path: Path | str) -> str:
    """`onnx` or `safetensors`, from the output's suffix; UsageError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise UsageError(f"{path}: the output must end in .onnx or .safetensors")
    return SUFFIX_FORMATS[suffix]


def default_face_crop() -> dict[str, Any]:
    """The crop settings of `facetool detect`'s defaults, for models whose training cache was not named."""
    config = DetectConfig()
    return {key: getattr(config, key) for key in CROP_KEYS} | {
        "align": config.align,
        "source": "facetool detect defaults (no training cache given)",
    }


def face_crop_from_meta(meta: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The crop settings recorded in a face cache's meta by `facetool detect`, with the detector by format and
    weights file name (not the folder it was found in on this machine)."""
    crop = default_face_crop()
    for key in CROP_KEYS:
        if key in meta:
            crop[key] = meta[key]
    detector = meta.get("detector")
    if isinstance(detector, Mapping):
        crop["detector"] = {
            key: detector[key] for key in ("name", "format", "weights", "settings") if key in detector
        }
        if detector.get("format") in ("tensorflow", "caffe"):
            crop["model_format"] = detector["format"]
    crop["align"] = meta.get("align", "none")
    if meta.get("template") is not None:
        crop["template"] = meta["template"]
    crop["source"] = source
    return crop


def random_check_inputs(count: int, image_size: int) -> np.ndarray:
    """Seeded float32 NCHW inputs in the standardised range, for when no real faces are given."""
    rng = np.random.default_rng(CHECK_SEED)
    faces = rng.integers(0, 256, size=(count, 3, image_size, image_size), dtype=np.uint8)
    return ((faces.astype(np.float32) - 127.5) / 128.0).astype(np.float32)


def _path_fields(model: type[BaseModel]) -> dict[str, Any]:
    """The fields of a settings model that hold paths (True), and the same map for its nested sections."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        kinds = {field.annotation, *typing.get_args(field.annotation)}
        kinds |= {inner for kind in list(kinds) for inner in typing.get_args(kind)}
        classes = [kind for kind in kinds if isinstance(kind, type)]
        if any(issubclass(kind, PurePath) for kind in classes):
            found[name] = True
        elif nested := [kind for kind in classes if issubclass(kind, BaseModel)]:
            found[name] = _path_fields(nested[0])
    return found


def _names_only(value: Any, fields: Mapping[str, Any]) -> Any:
    """A training config with every path reduced to its last component: the card travels, paths do not."""
    if not isinstance(value, Mapping):
        return value
    out = dict(value)
    for key, kind in fields.items():
        item = out.get(key)
        if kind is True and isinstance(item, str):
            out[key] = PurePath(item).name
        elif kind is True and isinstance(item, list):
            out[key] = [PurePath(v).name if isinstance(v, str) else v for v in item]
        elif isinstance(kind, Mapping):
            out[key] = _names_only(item, kind)
    return out


def training_recipe(config: Any, source: Path) -> dict[str, Any]:
    """The training config as plain JSON data with names instead of local paths; ModelFileError when the
    source's config is not plain data (a tensor or an object where its settings belong)."""
    if not isinstance(config, Mapping):
        raise ModelFileError(f"{source}: checkpoint field 'config' is {type(config).__name__}, not a table")
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: checkpoint field 'config' is not plain data ({exc})") from None
    return _names_only(config, _path_fields(TrainConfig))


def _source_recipe(
    source: Path,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """Training recipe, crop settings and verification entry already known about the source model."""
    if source.suffix.lower() == ".safetensors":
        card = read_card(source)
        training = card.get("training")
        if isinstance(training, dict) and "config" in training:
            training = {**training, "config": training_recipe(training["config"], card_path(source))}
        return training, card.get("face_crop"), card.get("verification")
    try:
        ckpt = load_checkpoint(source)
    except FacetoolError:
        return {"source": "facenet-pytorch weights file", "file": source.name}, None, None
    epoch = ckpt["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ModelFileError(f"{source}: checkpoint field 'epoch' is {type(epoch).__name__}, not a count")
    return (
        {"epochs": epoch, "config": training_recipe(ckpt["config"], source), "checkpoint": source.name},
        read_face_crop(source, ckpt),
        None,
    )


def read_report(path: Path) -> dict[str, Any]:
    """A `facetool eval` report.json as a dict; ModelFileError naming the file when it is not one."""
    try:
        report = json.loads(read_text_limited(path, what="eval report"))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}:{exc.lineno}: eval report is not valid JSON ({exc.msg})") from None
    if not isinstance(report, dict):
        raise ModelFileError(f"{path}: not a facetool eval report.json (not a JSON object)")
    return report


def onnx_session(model: Path | str | bytes) -> Any:
    """An onnxruntime CPU session for a file (or an ONNX model's bytes); FacetoolError when onnxruntime is
    missing or refuses it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FacetoolError(
            "onnxruntime is not installed: pip install 'facetool[export]' to run ONNX models"
        ) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=["CPUExecutionProvider"])  # fmt: skip
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        name = "the exported graph" if isinstance(model, bytes) else model
        raise ModelFileError(f"{name}: onnxruntime cannot load this file ({first})") from None


def onnx_input_shape(session: Any) -> tuple[int | None, int | None]:
    """(input side, embedding size) an ONNX graph declares; None for a dimension it leaves open."""
    inputs, outputs = session.get_inputs()[0].shape, session.get_outputs()[0].shape
    side = inputs[2] if len(inputs) == 4 and inputs[2] == inputs[3] and isinstance(inputs[2], int) else None
    dim = outputs[1] if len(outputs) == 2 and isinstance(outputs[1], int) else None
    return side, dim


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null meanwhile: torch's exporter logs its graph there from C++."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def onnx_bytes(model: nn.Module, *, name: str, image_size: int, opset: int) -> bytes:
    """Trace `model` to an ONNX graph (in memory) with a dynamic batch dimension.

    The TorchScript exporter (`dynamo=False`) needs nothing beyond torch; the dynamo exporter would need
    onnxscript. The graph torch prints when it gives up is kept off the terminal: the error says why. Tracing
    to memory keeps disk errors out of here: they surface, named, when the bytes are written.
    """
    dummy = torch.zeros(2, 3, image_size, image_size)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), _native_stdout_silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FacetoolError(
            f"backbone {name!r} cannot be exported to ONNX: {type(exc).__name__}: {first}"
        ) from None
    return buffer.getvalue()


def onnx_max_abs_diff(model: nn.Module, session: Any, inputs: np.ndarray) -> float:
    """Largest |onnxruntime - torch| over the embeddings of `inputs` (float32 NCHW), on the CPU."""
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got - expected)))


def export_onnx(
    model: nn.Module,
    output: Path,
    *,
    name: str,
    image_size: int,
    config: ExportConfig,
    check_inputs: np.ndarray,
) -> tuple[bytes, float]:
    """Trace `model` and check the graph with onnxruntime on `check_inputs` (float32 NCHW); returns its bytes and
    the largest |onnxruntime - torch|. Above `config.tolerance` FacetoolError says why (nothing is written)."""
    if len(check_inputs) == 0:
        raise UsageError(f"{output}: no faces to check the ONNX file on")
    data = onnx_bytes(model, name=name, image_size=image_size, opset=config.opset)
    session = onnx_session(data)
    max_diff = onnx_max_abs_diff(model, session, np.ascontiguousarray(check_inputs, dtype=np.float32))
    if not max_diff <= config.tolerance:
        raise FacetoolError(
            f"{output}: ONNX embeddings differ from torch by up to {max_diff:.3g} "
            f"(tolerance {config.tolerance:g}): backbone {name!r} does not trace faithfully "
            "(its forward depends on the input's values), nothing written"
        )
    return data, max_diff


def _check_outputs(output: Path) -> None:
    """Refuse, before any work, an output or card path that is a folder; create the output's folder."""
    for path in (output, card_path(output)):
        if path.is_dir():
            raise UsageError(f"{path}: is a folder; export writes the model and its card as files there")
    make_dir(output.parent, "folder of the output")


def export_model(
    source: Path | str,
    output: Path | str,
    *,
    config: ExportConfig | None = None,
    report: Path | str | None = None,
    face_crop: Mapping[str, Any] | None = None,
    check_inputs: Callable[[int], np.ndarray] | None = None,
) -> ExportResult:
    """Export a checkpoint, facenet-pytorch weights or safetensors model to `output` (.onnx/.safetensors).

    `face_crop`: the crop settings of the training cache (`face_crop_from_meta`); `check_inputs(image_size)`: float32
    NCHW faces at the model's input size to compare ONNX with torch on (seeded noise when None). The model file
    and its card are written together, both or neither; an ONNX file that disagrees with torch, non-finite
    weights or a card value out of range (a NaN threshold) write nothing.
    """
    config = config or ExportConfig()
    source, output = Path(source), Path(output)
    fmt = output_format(output)
    inputs_named = [source, *([Path(report)] if report is not None else [])]
    for path in (output, card_path(output)):
        check_output_not_input(path, inputs_named, option="-o")
    _check_outputs(output)
    training, known_crop, verification = _source_recipe(source)
    model, info = load_embedding_model(source, "cpu")
    backbone = info.backbone_entry
    if report is not None:
        verification = verification_from_report(read_report(Path(report)), str(report))
    crop = dict(face_crop or known_crop or default_face_crop())
    check = None
    if fmt == "safetensors":
        data = safetensors_bytes(model, backbone)
    else:
        size = int(backbone["image_size"])
        inputs = (
            check_inputs(size) if check_inputs is not None else random_check_inputs(config.check_faces, size)
        )
        data, max_diff = export_onnx(model, output, name=str(backbone["name"]), image_size=size, config=config,
                                     check_inputs=inputs)  # fmt: skip
        check = {
            "runtime": "onnxruntime CPU",
            "opset": config.opset,
            "faces": len(inputs),
            "max_abs_diff": max_diff,
            "tolerance": config.tolerance,
        }
    card = make_card(
        model_file=output,
        sha256=hashlib.sha256(data).hexdigest(),
        model_format=fmt,
        backbone=backbone,
        face_crop=crop,
        training=training,
        verification=verification,
        export_check=check,
        train_identities=info.train_identities,
    )
    atomic_write_together([(output, data), (card_path(output), card_bytes(card))])
    return ExportResult(output, card_path(output), fmt, check["max_abs_diff"] if check else None)
