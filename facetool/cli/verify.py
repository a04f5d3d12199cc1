"""`facetool verify MODEL IMAGE_A IMAGE_B`: distance, threshold and verdict for two photos."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import typer

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
from facetool.config.export import VerifyConfig

HELP = "\n\n".join(
    [
        "Are the faces in two photos the same person?",
        "MODEL is a facetool checkpoint, an exported .safetensors or .onnx (with its model card beside it). "
        "Both faces are detected and cropped as the training cache was (the card's crop settings), embedded, "
        "and compared; same person when the distance is at most the threshold (--threshold, else the card's).",
        "Prints the distance, the threshold and the verdict (--json for scripts); the exit code is 0 either "
        "way. A photo without a detected face is used whole, and the output says so.",
    ]
)


OPTIONS = ("threshold", "runtime", "device")
"""The settings `facetool verify` takes as options (every other one: `--set key=value`)."""


def _params() -> list[inspect.Parameter]:
    return [
        argument("model", Path, metavar="MODEL", help="Checkpoint, .safetensors or .onnx."),
        argument("image_a", Path, metavar="IMAGE_A", help="First photo."),
        argument("image_b", Path, metavar="IMAGE_B", help="Second photo."),
        *setting_options(VerifyConfig, OPTIONS),
        option("as_json", bool, "--json", default=False, help="Print the result as JSON."),
        option(
            "sets",
            list[str] | None,
            "--set",
            help="Any VerifyConfig setting as key=value (detect.margin=0.2, ...).",
        ),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="verify", help=HELP)(command_with(verify_command, _params()))


def verify_command(**options: Any) -> None:
    """Compare the two photos' faces; print the distance, threshold and verdict."""
    from facetool.verification import verify_pair

    config = build_config(VerifyConfig, None, options["sets"], given(options, OPTIONS))
    result = verify_pair(options["model"], options["image_a"], options["image_b"], config)
    console = literal_console()
    if options["as_json"]:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for face in result.faces:
        if face.note:
            console.print(labelled("note:", "yellow", face.note), highlight=False, soft_wrap=True)
    verdict = "same person" if result.same_person else "different people"
    console.print(
        f"distance {result.distance:.4f} ({result.metric}), threshold {result.threshold:.4f} "
        f"({result.threshold_source}): {verdict}",
        highlight=False,
        soft_wrap=True,
    )
