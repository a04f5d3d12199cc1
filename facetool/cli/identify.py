"""`facetool gallery build MODEL SOURCE -o gallery.h5` and `facetool identify MODEL --gallery G PROBE...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config, field_help
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

Threshold = Annotated[float | None, typer.Option("--threshold", help=field_help(GalleryConfig, "threshold"))]
Device = Annotated[str | None, typer.Option("--device", help=field_help(GalleryConfig, "device"))]
Sets = Annotated[
    list[str] | None, typer.Option("--set", help="Any setting as key=value (detect.margin=0.2, ...).")
]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Build a gallery index for `facetool identify`.", no_args_is_help=True)
    app.add_typer(sub, name="gallery")

    @sub.command(name="build", help=BUILD_HELP)
    def build_command(
        model: Annotated[Path, typer.Argument(metavar="MODEL", help=MODEL_HELP)],
        source: Annotated[
            Path, typer.Argument(metavar="DIR_OR_CACHE", help="Folder of <identity>/<images> or face cache.")
        ],
        output: Annotated[
            Path, typer.Option("--output", "-o", metavar="OUT", help="Gallery index to write.")
        ],
        threshold: Threshold = None,
        device: Device = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        sets: Sets = None,
    ) -> None:
        from facetool.recognition.gallery import build_gallery

        config = build_config(GalleryConfig, None, sets, {"threshold": threshold, "device": device})
        built = build_gallery(model, source, output, config)
        if as_json:
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
            literal_console(stderr=True).print(
                labelled("note:", "yellow", note), highlight=False, soft_wrap=True
            )

    @app.command(name="identify", help=IDENTIFY_HELP)
    def identify_command(
        model: Annotated[Path, typer.Argument(metavar="MODEL", help=MODEL_HELP)],
        probes: Annotated[list[Path], typer.Argument(metavar="PROBE", help="Probe photos or folders.")],
        gallery: Annotated[
            Path, typer.Option("--gallery", metavar="GALLERY", help="Gallery index, folder or face cache.")
        ],
        top_k: Annotated[
            int | None, typer.Option("--top-k", metavar="K", help=field_help(GalleryConfig, "top_k"))
        ] = None,
        chunk_faces: Annotated[
            int | None,
            typer.Option("--chunk-faces", metavar="N", help=field_help(GalleryConfig, "chunk_faces")),
        ] = None,
        threshold: Threshold = None,
        device: Device = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        sets: Sets = None,
    ) -> None:
        from facetool.recognition.gallery import identify

        given = {"top_k": top_k, "chunk_faces": chunk_faces, "threshold": threshold, "device": device}
        config = build_config(GalleryConfig, None, sets, given)
        result = identify(model, gallery, probes, config)
        if as_json:
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
