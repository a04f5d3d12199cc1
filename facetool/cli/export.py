"""`facetool export CKPT -o model.onnx|model.safetensors`: a portable model file with its JSON model card."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import literal_console
from facetool.config.base import build_config
from facetool.config.export import ExportConfig

HELP = "\n\n".join(
    [
        "Export a trained model as ONNX or safetensors, with a JSON model card beside it.",
        "CKPT is a facetool checkpoint, facenet-pytorch weights or an exported .safetensors (with its card). "
        "The format follows the suffix of -o. The card (<file>.json) gives the backbone, input size and "
        "normalisation ((x - 127.5) / 128, RGB, NCHW), the face-crop settings, the training recipe and, with "
        "--report, the verification threshold and the accuracy it was measured with.",
        "--cache names the training face cache: its crop settings go into the card and its first faces check "
        "the ONNX file (seeded noise otherwise). An ONNX file is written only when onnxruntime's embeddings "
        "match torch's within the tolerance; the largest difference is printed.",
    ]
)


def _from_cache(path: Path, count: int) -> tuple[dict[str, Any], Callable[[int], np.ndarray]]:
    """Crop settings of a face cache and a maker of ONNX check inputs from its first `count` faces."""
    from facetool.cache import open_cache
    from facetool.cache.origin import recorded
    from facetool.data.transforms import to_input
    from facetool.errors import UsageError
    from facetool.models.export import face_crop_from_meta

    with open_cache(path) as cache:
        if len(cache) == 0:
            raise UsageError(f"{path}: --cache holds no faces; name the face cache the model was trained on")
        crop = face_crop_from_meta(recorded(cache.meta), f"face cache {path.name}")
        faces = cache.read_faces(np.arange(min(count, len(cache))))
    return crop, lambda size: to_input(faces, "cpu", size).numpy()


OPTIONS = ("opset", "tolerance")
"""The settings `facetool export` takes as options (every other one: `--set key=value`)."""


def _params() -> list[inspect.Parameter]:
    return [
        argument(
            "checkpoint", Path, metavar="CKPT", help="Checkpoint, facenet-pytorch weights or .safetensors."
        ),
        option("output", Path, "--output", "-o", default=..., help="model.onnx or model.safetensors."),
        option("report", Path | None, "--report", help="report.json of `facetool eval` for the threshold."),
        option("cache", Path | None, "--cache", help="Training face cache: crop settings, check faces."),
        *setting_options(ExportConfig, OPTIONS),
        option("sets", list[str] | None, "--set", help="Any ExportConfig setting as key=value."),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="export", help=HELP)(command_with(export_command, _params()))


def export_command(**options: Any) -> None:
    """Write the model file and its card; print the ONNX check's largest difference."""
    from facetool.files import check_output_not_input
    from facetool.models.export import export_model
    from facetool.models.model_card import card_path

    checkpoint, output, report, cache = (options[k] for k in ("checkpoint", "output", "report", "cache"))

    if cache is not None:
        check_output_not_input(output, [cache])
        check_output_not_input(card_path(output), [cache])

    config = build_config(ExportConfig, None, options["sets"], given(options, OPTIONS))
    crop, inputs = _from_cache(cache, config.check_faces) if cache is not None else (None, None)
    result = export_model(
        checkpoint, output, config=config, report=report, face_crop=crop, check_inputs=inputs
    )
    console = literal_console()
    console.print(f"wrote {result.path} ({result.model_format}) and its card {result.card}", highlight=False)
    if result.max_abs_diff is not None:
        console.print(
            f"onnxruntime vs torch: max abs difference {result.max_abs_diff:.3g} "
            f"(tolerance {config.tolerance:g})",
            highlight=False,
        )
