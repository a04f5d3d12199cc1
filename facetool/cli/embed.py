"""`facetool embed CKPT INPUTS... -o OUT`: embeddings of images, folders and face caches to .h5/.npz/.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config, field_help
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


def register(app: typer.Typer) -> None:
    @app.command(name="embed", help=HELP)
    def embed_command(
        checkpoint: Annotated[
            Path, typer.Argument(metavar="CKPT", help="facetool checkpoint or facenet-pytorch weights.")
        ],
        inputs: Annotated[
            list[Path], typer.Argument(metavar="INPUTS...", help="Image files, folders and face caches.")
        ],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output file: .h5, .npz or .csv.")],
        flip: Annotated[
            bool | None, typer.Option("--flip/--no-flip", help=field_help(EmbedConfig, "flip"))
        ] = None,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", help=field_help(EmbedConfig, "batch_size"))
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", help=field_help(EmbedConfig, "device"))
        ] = None,
        runtime: Annotated[
            str | None, typer.Option("--runtime", help=field_help(EmbedConfig, "runtime"))
        ] = None,
        sets: Annotated[
            list[str] | None, typer.Option("--set", help="Any EmbedConfig setting as key=value (repeatable).")
        ] = None,
    ) -> None:
        from facetool.embedding import embed_paths

        given = {"flip": flip, "batch_size": batch_size, "device": device, "runtime": runtime}
        config = build_config(EmbedConfig, None, sets, given)
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
            console.print(
                labelled("skipped", "yellow", f"{failed}: {reason}"), highlight=False, soft_wrap=True
            )
        console.print(f"wrote {summary.count} embeddings of size {summary.dim} to {path}", highlight=False)
