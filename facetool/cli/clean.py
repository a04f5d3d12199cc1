"""`facetool dataset clean CACHE --model MODEL -o clean.h5`: parse options, call facetool.recognition.clean."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import typer

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import literal_console
from facetool.config.base import build_config
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


OPTIONS = ("mark_only", "threshold", "device")
"""The settings `facetool dataset clean` takes as options (every other one: `--set key=value`)."""


def _params() -> list[inspect.Parameter]:
    return [
        argument("cache", Path, metavar="CACHE", help="Input face cache."),
        option(
            "model", Path, "--model", default=..., metavar="MODEL", help="Checkpoint, .safetensors or .onnx."
        ),
        option("output", Path, "--output", "-o", default=..., metavar="OUT", help="Face cache to write."),
        option("report", Path | None, "--report", metavar="HTML", help="Write the HTML report here."),
        *setting_options(CleanConfig, OPTIONS),
        option("as_json", bool, "--json", default=False, help="Print the report as JSON."),
        option(
            "sets",
            list[str] | None,
            "--set",
            help="Any CleanConfig setting as key=value (far_factor=1.2, ...).",
        ),
    ]


def register_clean(sub: typer.Typer) -> None:
    sub.command(name="clean", help=HELP)(command_with(clean_command, _params()))


def clean_command(**options: Any) -> None:
    """Flag the doubtful faces, write the cleaned cache and the flags; print the counts."""
    from facetool.recognition.clean import clean_cache, flags_paths

    output, report = options["output"], options["report"]
    config = build_config(CleanConfig, None, options["sets"], given(options, OPTIONS))
    result = clean_cache(options["model"], options["cache"], output, config, report)
    if options["as_json"]:
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
