"""`facetool embed CKPT INPUTS... -o OUT`: embeddings of images, folders and face caches to .h5/.npz/.csv."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
from facetool.config.evaluate import EmbedConfig

HELP = "\n\n".join(
    [
        "Write embeddings of images, folders or face caches.",
        "INPUTS are image files, folders (LFW layout DIR/<identity>/<image>, or flat) and face caches (.h5). "
        "Raw images are detected and cropped as the model's card says (the training cache's crop settings; "
        "detect's defaults for a model without a card; --set detect.KEY=... overrides one), then resized to "
        "the model's input, as a training cache is.",
        "CKPT may also be an ONNX file from `facetool export` (--runtime onnx runs it in onnxruntime).",
        "The output format follows the extension of -o: .h5, .npz or .csv (path, identity, detected, "
        "embedding). --flip adds the mirrored face's embedding and re-normalises.",
    ]
)


OPTIONS = ("flip", "batch_size", "device", "runtime")
"""The settings `facetool embed` takes as options (every other one: `--set key=value`)."""


def _params() -> list[inspect.Parameter]:
    return [
        argument("checkpoint", Path, metavar="CKPT", help="facetool checkpoint or facenet-pytorch weights."),
        argument("inputs", list[Path], metavar="INPUTS...", help="Image files, folders and face caches."),
        option("output", Path, "--output", "-o", default=..., help="Output file: .h5, .npz or .csv."),
        *setting_options(EmbedConfig, OPTIONS),
        option("sets", list[str] | None, "--set", help="Any EmbedConfig setting as key=value (repeatable)."),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="embed", help=HELP)(command_with(embed_command, _params()))


def embed_command(**options: Any) -> None:
    """Embed the inputs into the output file; list what was skipped."""
    from facetool.embedding import embed_paths

    checkpoint, inputs, output = options["checkpoint"], options["inputs"], options["output"]
    config = build_config(EmbedConfig, None, options["sets"], given(options, OPTIONS))
    console = literal_console()
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("embedding", total=None)
        summary, path = embed_paths(
            checkpoint,
            inputs,
            output,
            config,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    for failed, reason in summary.failures:
        console.print(labelled("skipped", "yellow", f"{failed}: {reason}"), highlight=False, soft_wrap=True)
    console.print(f"wrote {summary.count} embeddings of size {summary.dim} to {path}", highlight=False)
