"""`facetool verify MODEL IMAGE_A IMAGE_B`: distance, threshold and verdict for two photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config, field_help
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


def register(app: typer.Typer) -> None:
    @app.command(name="verify", help=HELP)
    def verify_command(
        model: Annotated[Path, typer.Argument(metavar="MODEL", help="Checkpoint, .safetensors or .onnx.")],
        image_a: Annotated[Path, typer.Argument(metavar="IMAGE_A", help="First photo.")],
        image_b: Annotated[Path, typer.Argument(metavar="IMAGE_B", help="Second photo.")],
        threshold: Annotated[
            float | None, typer.Option("--threshold", help=field_help(VerifyConfig, "threshold"))
        ] = None,
        runtime: Annotated[
            str | None, typer.Option("--runtime", help=field_help(VerifyConfig, "runtime"))
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", help=field_help(VerifyConfig, "device"))
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        sets: Annotated[
            list[str] | None,
            typer.Option("--set", help="Any VerifyConfig setting as key=value (detect.margin=0.2, ...)."),
        ] = None,
    ) -> None:
        from facetool.verification import verify_pair

        given = {"threshold": threshold, "runtime": runtime, "device": device}
        config = build_config(VerifyConfig, None, sets, given)
        result = verify_pair(model, image_a, image_b, config)
        console = literal_console()
        if as_json:
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
