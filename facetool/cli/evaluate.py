"""`facetool eval CKPT --data CACHE_OR_DIR`: options into an EvalConfig, run the evaluation, render it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from facetool.config.base import load_config, parse_override
from facetool.config.evaluate import EvalConfig

INTERRUPTED_EXIT = 130

HELP = "\n\n".join(
    [
        "Evaluate a checkpoint on the LFW verification protocol.",
        "CKPT is a facetool checkpoint or a facenet-pytorch weights file. --data is a face cache or an "
        "LFW-style image folder (then only the pairs' images are detected, at the cache's crop size, into a "
        "cache in --out).",
        "Without --pairs, pairs.txt is looked for in the data folder and beside it (for a cache: beside it, "
        "then in and beside the image folder it was made from). With --train-pairs (View 1: "
        "pairsDevTrain.txt) thresholds are chosen on those pairs and --pairs is scored.",
        "Writes report.json and roc.png into --out, which never lies inside an input. When the checkpoint "
        "records the people it was trained on, a result on pairs of any of them is marked NOT HELD OUT.",
    ]
)


def build_config(options: dict[str, Any], sets: list[str]) -> EvalConfig:
    """EvalConfig from the given options, then `--set key=value` items (e.g. detect.threshold=0.6)."""
    overrides = [(k, str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None]
    overrides += [parse_override(text) for text in sets]
    return load_config(EvalConfig, None, overrides)


def register(app: typer.Typer) -> None:
    @app.command(name="eval", help=HELP)
    def eval_command(
        checkpoint: Annotated[
            Path, typer.Argument(metavar="CKPT", help="facetool checkpoint or facenet-pytorch weights.")
        ],
        data: Annotated[
            Path | None, typer.Option("--data", help="Face cache (.h5) or LFW image folder.")
        ] = None,
        pairs: Annotated[Path | None, typer.Option("--pairs", help="Pairs file to score.")] = None,
        train_pairs: Annotated[
            Path | None,
            typer.Option("--train-pairs", help="Pairs file that chooses the thresholds (View 1)."),
        ] = None,
        fold: Annotated[
            int | None,
            typer.Option(
                "--fold", metavar="K", help="Score only fold K of the pairs file, thresholds from the others."
            ),
        ] = None,
        flip: Annotated[
            bool | None, typer.Option("--flip/--no-flip", help="Add the mirrored face's embedding.")
        ] = None,
        distance: Annotated[
            str | None,
            typer.Option("--distance", help="euclidean (squared L2) or cosine (default: euclidean)."),
        ] = None,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", help="Faces per forward pass.")
        ] = None,
        device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Folder for report.json, roc.png (default: runs/eval).")
        ] = None,
        sets: Annotated[
            list[str] | None, typer.Option("--set", help="Any EvalConfig setting as key=value (repeatable).")
        ] = None,
    ) -> None:
        from facetool.evaluate.pipeline import evaluate_checkpoint
        from facetool.evaluate.report import render_report

        options = {
            "data": data,
            "pairs": pairs,
            "train_pairs": train_pairs,
            "fold": fold,
            "flip": flip,
            "distance": distance,
            "batch_size": batch_size,
            "device": device,
            "out": out,
        }
        config = build_config(options, sets or [])
        console = Console()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def show(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done, total=total)

            try:
                outcome = evaluate_checkpoint(
                    checkpoint,
                    config,
                    detect_progress=lambda p: show("detecting faces", p.done, p.total),
                    embed_progress=lambda done, total: show("embedding", done, total),
                )
            except KeyboardInterrupt:
                bar.stop()
                Console(stderr=True).print("interrupted (detected faces stay in the cache; rerun to resume)")
                raise typer.Exit(INTERRUPTED_EXIT) from None
        render_report(outcome.report, console)
        console.print(f"wrote {outcome.report_path} and {outcome.roc_path}", highlight=False)
