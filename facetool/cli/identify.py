"""`facetool gallery build MODEL SOURCE -o gallery.h5` and `facetool identify MODEL --gallery G PROBE...`."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import typer

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
from facetool.config.recognition import GalleryConfig

MODEL_HELP = "Checkpoint, .safetensors or .onnx (with its model card beside it)."
BUILD_HELP = "\n\n".join(
    [
        "Embed a gallery once: every face, one centre per identity, and the model's SHA-256.",
        "SOURCE is a folder of <identity>/<images> (faces detected and cropped as the model's card says) or a "
        "face cache. The index (HDF5) is searched by `facetool identify`, only with the model that built it.",
    ]
)
IDENTIFY_HELP = "\n\n".join(
    [
        "Who is in each probe photo? The nearest identities of the gallery, with distances.",
        "GALLERY is an index from `facetool gallery build`, a folder of <identity>/<images> or a face cache. "
        "An identity's distance is that of its nearest face; a probe farther than the threshold (--threshold, "
        "else the model card's) from every identity is 'unknown'. The search is exact, --chunk-faces gallery "
        "faces at a time.",
    ]
)

BUILD_OPTIONS = ("threshold", "device")
IDENTIFY_OPTIONS = ("top_k", "chunk_faces", "threshold", "device")
"""The settings `gallery build` and `identify` take as options (every other one: `--set key=value`)."""
METAVARS = {"top_k": "K", "chunk_faces": "N"}


def _tail() -> list[inspect.Parameter]:
    return [
        option("as_json", bool, "--json", default=False, help="Print the result as JSON."),
        option("sets", list[str] | None, "--set", help="Any setting as key=value (detect.margin=0.2, ...)."),
    ]


def _build_params() -> list[inspect.Parameter]:
    return [
        argument("model", Path, metavar="MODEL", help=MODEL_HELP),
        argument("source", Path, metavar="DIR_OR_CACHE", help="Folder of <identity>/<images> or face cache."),
        option("output", Path, "--output", "-o", default=..., metavar="OUT", help="Gallery index to write."),
        *setting_options(GalleryConfig, BUILD_OPTIONS),
        *_tail(),
    ]


def _identify_params() -> list[inspect.Parameter]:
    return [
        argument("model", Path, metavar="MODEL", help=MODEL_HELP),
        argument("probes", list[Path], metavar="PROBE", help="Probe photos or folders."),
        option(
            "gallery",
            Path,
            "--gallery",
            default=...,
            metavar="GALLERY",
            help="Gallery index, folder or face cache.",
        ),
        *setting_options(GalleryConfig, IDENTIFY_OPTIONS, metavars=METAVARS),
        *_tail(),
    ]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Build a gallery index for `facetool identify`.", no_args_is_help=True)
    app.add_typer(sub, name="gallery")
    sub.command(name="build", help=BUILD_HELP)(command_with(build_command, _build_params()))
    app.command(name="identify", help=IDENTIFY_HELP)(command_with(identify_command, _identify_params()))


def build_command(**options: Any) -> None:
    """Embed the gallery into its index; print the counts and what was left out."""
    from facetool.recognition.gallery import build_gallery

    output = options["output"]
    config = build_config(GalleryConfig, None, options["sets"], given(options, BUILD_OPTIONS))
    built = build_gallery(options["model"], options["source"], output, config)
    if options["as_json"]:
        print(json.dumps(built.__dict__, indent=2))
        return
    console = literal_console()
    console.print(
        f"{built.faces} faces of {built.identities} identities written to {output}",
        highlight=False,
        soft_wrap=True,
    )
    if built.missed:
        note = f"{len(built.missed)} image(s) left out, e.g. {built.missed[0][0]}: {built.missed[0][1]}"
        literal_console(stderr=True).print(labelled("note:", "yellow", note), highlight=False, soft_wrap=True)


def identify_command(**options: Any) -> None:
    """Search the gallery for each probe; print the nearest identities."""
    from facetool.recognition.gallery import identify

    config = build_config(GalleryConfig, None, options["sets"], given(options, IDENTIFY_OPTIONS))
    result = identify(options["model"], options["gallery"], options["probes"], config)
    if options["as_json"]:
        print(json.dumps(result.to_dict(), indent=2))
        return
    console = literal_console()
    console.print(
        f"{result.gallery_identities} identities, {result.gallery_faces} faces; threshold "
        f"{result.threshold:.4f} ({result.metric}, {result.threshold_source})",
        highlight=False,
        soft_wrap=True,
    )
    for probe in result.probes:
        nearest = ", ".join(f"{m.identity} {m.distance:.4f}" for m in probe.matches)
        console.print(
            f"{probe.probe}: {probe.identity or 'unknown'} (nearest: {nearest})",
            highlight=False,
            soft_wrap=True,
        )
