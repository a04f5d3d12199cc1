"""`export_model`: a trained embedding network as an ONNX or safetensors file with a model card beside it.

ONNX files take (batch, 3, S, S) float32 input named `input` (dynamic batch) and give `embedding`,
(batch, D) L2-normalised; each is run with onnxruntime on the CPU against torch before it is moved into
place, and refused when the largest difference exceeds the tolerance. safetensors files hold the embedding
network's tensors only (no optimizer, no classifier head) and load without unpickling.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facetool.config.detect import DetectConfig
from facetool.config.export import ExportConfig
from facetool.errors import FacetoolError, ModelFileError, UsageError
from facetool.files import atomic_output, atomic_write_text, check_output_not_input, read_text_limited
from facetool.models.loading import load_checkpoint, load_embedding_model
from facetool.models.model_card import (
    CROP_KEYS,
    card_path,
    make_card,
    read_card,
    state_for_export,
    verification_from_report,
)

FORMATS = {".onnx": "onnx", ".safetensors": "safetensors"}
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
    if suffix not in FORMATS:
        raise UsageError(f"{path}: the output must end in .onnx or .safetensors")
    return FORMATS[suffix]


def default_face_crop() -> dict[str, Any]:
    """The crop settings of `facetool detect`'s defaults, for models whose training cache was not named."""
    config = DetectConfig()
    return {key: getattr(config, key) for key in CROP_KEYS} | {
        "source": "facetool detect defaults (no training cache given)"
    }


def face_crop_from_meta(meta: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The crop settings recorded in a face cache's meta by `facetool detect` (detector format included)."""
    crop = default_face_crop()
    for key in (*CROP_KEYS, "detector"):
        if key in meta:
            crop[key] = meta[key]
    detector = meta.get("detector")
    if isinstance(detector, Mapping) and detector.get("format") in ("tensorflow", "caffe"):
        crop["model_format"] = detector["format"]
    crop["source"] = source
    return crop


def random_check_inputs(count: int, image_size: int) -> np.ndarray:
    """Seeded float32 NCHW inputs in the standardised range, for when no real faces are given."""
    rng = np.random.default_rng(CHECK_SEED)
    faces = rng.integers(0, 256, size=(count, 3, image_size, image_size), dtype=np.uint8)
    return ((faces.astype(np.float32) - 127.5) / 128.0).astype(np.float32)


def _source_recipe(
    source: Path,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """Training recipe, crop settings and verification entry already known about the source model."""
    if source.suffix.lower() == ".safetensors":
        card = read_card(source)
        return card.get("training"), card.get("face_crop"), card.get("verification")
    try:
        ckpt = load_checkpoint(source)
    except FacetoolError:
        return {"source": "facenet-pytorch weights file", "file": source.name}, None, None
    return {"epochs": ckpt["epoch"], "config": ckpt["config"], "checkpoint": source.name}, None, None


def read_report(path: Path) -> dict[str, Any]:
    """A `facetool eval` report.json as a dict; ModelFileError naming the file when it is not one."""
    try:
        report = json.loads(read_text_limited(path, what="eval report"))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}:{exc.lineno}: eval report is not valid JSON ({exc.msg})") from None
    if not isinstance(report, dict):
        raise ModelFileError(f"{path}: not a facetool eval report.json (not a JSON object)")
    return report


def onnx_session(path: Path | str) -> Any:
    """An onnxruntime CPU session for `path`; FacetoolError when onnxruntime is missing or refuses the file."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FacetoolError(
            "onnxruntime is not installed: pip install 'facetool[export]' to run ONNX models"
        ) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: onnxruntime cannot load this file ({first})") from None


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


def write_onnx(model: nn.Module, path: Path, *, name: str, image_size: int, opset: int) -> None:
    """Trace `model` to an ONNX file with a dynamic batch dimension.

    The TorchScript exporter (`dynamo=False`) needs nothing beyond torch; the dynamo exporter would need
    onnxscript. The graph torch prints when it gives up is kept off the terminal: the error says why.
    """
    dummy = torch.zeros(2, 3, image_size, image_size)
    try:
        with warnings.catch_warnings(), _native_stdout_silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
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


def onnx_max_abs_diff(model: nn.Module, path: Path, inputs: np.ndarray) -> float:
    """Largest |onnxruntime - torch| over the embeddings of `inputs` (float32 NCHW), on the CPU."""
    session = onnx_session(path)
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got - expected)))


def export_safetensors(model: nn.Module, output: Path) -> None:
    """Write the network's tensors (nothing else) to a .safetensors file, atomically."""
    from safetensors.torch import save_file

    with atomic_output(output) as tmp:
        save_file(state_for_export(model), str(tmp), metadata={"format": "facetool-embedding"})


def export_onnx(
    model: nn.Module,
    output: Path,
    *,
    name: str,
    image_size: int,
    config: ExportConfig,
    check_inputs: np.ndarray,
) -> float:
    """Trace `model` to `output` and check it with onnxruntime on `check_inputs` (float32 NCHW); returns the
    largest |onnxruntime - torch|. Above `config.tolerance` nothing is written and FacetoolError says why."""
    with atomic_output(output) as tmp:
        write_onnx(model, tmp, name=name, image_size=image_size, opset=config.opset)
        max_diff = onnx_max_abs_diff(model, tmp, np.ascontiguousarray(check_inputs, dtype=np.float32))
        if not max_diff <= config.tolerance:
            raise FacetoolError(
                f"{output}: ONNX embeddings differ from torch by up to {max_diff:.3g} "
                f"(tolerance {config.tolerance:g}): backbone {name!r} does not trace faithfully "
                "(its forward depends on the input's values), nothing written"
            )
    return max_diff


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
    and then its card are written atomically; an ONNX file that disagrees with torch is never written.
    """
    config = config or ExportConfig()
    source, output = Path(source), Path(output)
    fmt = output_format(output)
    inputs_named = [source, *([Path(report)] if report is not None else [])]
    for path in (output, card_path(output)):
        check_output_not_input(path, inputs_named, option="-o")
    training, known_crop, verification = _source_recipe(source)
    model, info = load_embedding_model(source, "cpu")
    backbone = {"name": info.backbone, "embedding_dim": info.embedding_dim, "image_size": info.image_size}
    if report is not None:
        verification = verification_from_report(read_report(Path(report)), str(report))
    crop = dict(face_crop or known_crop or default_face_crop())
    check = None
    if fmt == "safetensors":
        export_safetensors(model, output)
    else:
        size = int(backbone["image_size"])
        inputs = (
            check_inputs(size) if check_inputs is not None else random_check_inputs(config.check_faces, size)
        )
        max_diff = export_onnx(model, output, name=str(backbone["name"]), image_size=size, config=config,
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
        model_format=fmt,
        backbone=backbone,
        face_crop=crop,
        training=training,
        verification=verification,
        export_check=check,
        train_identities=info.train_identities,
    )
    atomic_write_text(card_path(output), json.dumps(card, indent=2) + "\n")
    return ExportResult(output, card_path(output), fmt, check["max_abs_diff"] if check else None)
