"""`facetool dataset clean CACHE --model MODEL -o clean.h5`: parse options, call facetool.recognition.clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facetool.cli.output import literal_console
from facetool.config.base import build_config, field_help
from facetool.config.recognition import CleanConfig

HELP = "\n\n".join(
    [
        "Flag the faces of a training cache whose labels the model doubts, and write a cache without them.",
        "Every face is embedded with MODEL. With t its verification threshold (--threshold, else the card's): "
        "far (farther than far_factor*t from its identity's other faces' centre), closer-to-other (nearer "
        "another identity's centre than its own, within t), duplicate (within duplicate_factor*t of an earlier "
        "face of its identity) and same-person (two identities' centres within merge_factor*t; reported only).",
        "The output cache leaves the flagged faces out (--mark-only keeps them); the flags go beside it as "
        "OUT.flags.json and OUT.flags.csv, and --report writes an HTML page of each flagged face next to its "
        "identity's typical faces. The input cache is never changed.",
    ]
)


def register_clean(sub: typer.Typer) -> None:
    @sub.command(name="clean", help=HELP)
    def clean_command(
        cache: Annotated[Path, typer.Argument(metavar="CACHE", help="Input face cache.")],
        model: Annotated[
            Path, typer.Option("--model", metavar="MODEL", help="Checkpoint, .safetensors or .onnx.")
        ],
        output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="Face cache to write.")],
        report: Annotated[
            Path | None, typer.Option("--report", metavar="HTML", help="Write the HTML report here.")
        ] = None,
        mark_only: Annotated[
            bool, typer.Option("--mark-only", help=field_help(CleanConfig, "mark_only"))
        ] = False,
        threshold: Annotated[
            float | None, typer.Option("--threshold", help=field_help(CleanConfig, "threshold"))
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", help=field_help(CleanConfig, "device"))
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        sets: Annotated[
            list[str] | None,
            typer.Option("--set", help="Any CleanConfig setting as key=value (far_factor=1.2, ...)."),
        ] = None,
    ) -> None:
        from facetool.recognition.clean import clean_cache, flags_paths

        given = {"threshold": threshold, "device": device, "mark_only": mark_only or None}
        config = build_config(CleanConfig, None, sets, given)
        result = clean_cache(model, cache, output, config, report)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
            return
        console = literal_console()
        counts = ", ".join(f"{rule} {n}" for rule, n in result.counts().items())
        console.print(
            f"{result.faces} faces, {result.identities} identities; flags: {counts}",
            highlight=False,
            soft_wrap=True,
        )
        kept = result.faces - result.dropped
        console.print(f"{kept} faces written to {output}", highlight=False, soft_wrap=True)
        json_path, csv_path = flags_paths(output)
        console.print(f"flags: {json_path}, {csv_path}", highlight=False, soft_wrap=True)
        if report is not None:
            console.print(f"report: {report}", highlight=False, soft_wrap=True)
