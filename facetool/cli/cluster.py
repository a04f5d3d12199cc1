"""`facetool cluster MODEL PHOTOS... -o clusters/`: parse options, call facetool.recognition.cluster."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import typer

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
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


OPTIONS = ("threshold", "linkage", "device")
"""The settings `facetool cluster` takes as options (every other one: `--set key=value`)."""


def _params() -> list[inspect.Parameter]:
    return [
        argument("model", Path, metavar="MODEL", help="Checkpoint, .safetensors or .onnx."),
        argument("photos", list[Path], metavar="PHOTO", help="Photos or folders of photos."),
        option("output", Path, "--output", "-o", default=..., metavar="OUT", help="New folder to write."),
        *setting_options(ClusterConfig, OPTIONS),
        option("as_json", bool, "--json", default=False, help="Print the result as JSON."),
        option(
            "sets",
            list[str] | None,
            "--set",
            help="Any ClusterConfig setting as key=value (threshold_factor=0.8, ...).",
        ),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="cluster", help=HELP)(command_with(cluster_command, _params()))


def cluster_command(**options: Any) -> None:
    """Cluster the photos' faces into the output folder; print the counts."""
    from facetool.recognition.cluster import cluster_photos

    output = options["output"]
    config = build_config(ClusterConfig, None, options["sets"], given(options, OPTIONS))
    result = cluster_photos(options["model"], options["photos"], output, config)
    if options["as_json"]:
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
        literal_console(stderr=True).print(labelled("note:", "yellow", note), highlight=False, soft_wrap=True)
