"""`facetool cluster MODEL PHOTOS... -o clusters/`: parse options, call facetool.recognition.cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config, field_help
from facetool.config.recognition import ClusterConfig

HELP = "\n\n".join(
    [
        "Group the faces of unknown people in photos.",
        "Each photo's face is detected and cropped as MODEL's card says and embedded; agglomerative clustering "
        "(scikit-learn, the `cluster` extra) joins faces while their linkage distance stays within "
        "threshold_factor times the verification threshold (--threshold, else the card's).",
        "OUT (a new folder) gets faces.csv (photo -> cluster), and per cluster a folder of links to its photos "
        "and an HTML contact sheet. Photos are linked, never copied or moved.",
    ]
)


def register(app: typer.Typer) -> None:
    @app.command(name="cluster", help=HELP)
    def cluster_command(
        model: Annotated[Path, typer.Argument(metavar="MODEL", help="Checkpoint, .safetensors or .onnx.")],
        photos: Annotated[
            list[Path], typer.Argument(metavar="PHOTO", help="Photos or folders of photos.")
        ],
        output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="New folder to write.")],
        threshold: Annotated[
            float | None, typer.Option("--threshold", help=field_help(ClusterConfig, "threshold"))
        ] = None,
        linkage: Annotated[
            str | None, typer.Option("--linkage", help=field_help(ClusterConfig, "linkage"))
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", help=field_help(ClusterConfig, "device"))
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        sets: Annotated[
            list[str] | None,
            typer.Option("--set", help="Any ClusterConfig setting as key=value (threshold_factor=0.8, ...)."),
        ] = None,
    ) -> None:
        from facetool.recognition.cluster import cluster_photos

        given = {"threshold": threshold, "linkage": linkage, "device": device}
        config = build_config(ClusterConfig, None, sets, given)
        result = cluster_photos(model, photos, output, config)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
            return
        console = literal_console()
        console.print(
            f"{result.faces} faces in {result.clusters} clusters ({result.singletons} alone), cut at "
            f"{result.threshold:.4f} ({result.metric}); written to {output}",
            highlight=False,
            soft_wrap=True,
        )
        if result.missed:
            note = f"{len(result.missed)} photo(s) without a face, listed in faces.csv"
            literal_console(stderr=True).print(
                labelled("note:", "yellow", note), highlight=False, soft_wrap=True
            )
