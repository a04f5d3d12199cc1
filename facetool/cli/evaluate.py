"""`facetool eval CKPT --data CACHE_OR_DIR`: options into an EvalConfig, run the evaluation, render it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import literal_console
from facetool.config.base import build_config
from facetool.config.evaluate import EvalConfig

INTERRUPTED_EXIT = 130

HELP = "\n\n".join(
    [
        "Evaluate a checkpoint on the LFW verification protocol.",
        "CKPT is a facetool checkpoint, a facenet-pytorch weights file or an exported model (.safetensors, or "
        ".onnx run in onnxruntime, see --runtime). --data is a face cache or an "
        "LFW-style image folder (then only the pairs' images are detected, with the crop settings of the "
        "model's card, or detect's defaults without one, into a cache in --out).",
        "Without --pairs, pairs.txt is looked for in the data folder and beside it (for a cache: beside it, "
        "then in and beside the image folder it was made from). With --train-pairs (View 1: "
        "pairsDevTrain.txt) thresholds are chosen on those pairs and --pairs is scored.",
        "--pack PACK (repeatable) scores insightface verification packs (lfw.bin, cfp_fp.bin, ...) instead, "
        "one table row each, as insightface scores them (flip sum, 10 contiguous folds); writes packs.json. "
        "--pairs also takes a CSV `path1,path2,same[,fold]` of one's own photos under --data.",
        "Several CKPTs are evaluated as one ensemble: each face's embeddings from every model, concatenated "
        "(the squared distance is the mean of the models'), flip applied to each.",
        "Writes report.json and roc.png into --out, which never lies inside an input. When the checkpoint "
        "records the people it was trained on, a result on pairs of any of them is marked NOT HELD OUT.",
    ]
)


OPTIONS = (
    "data",
    "pairs",
    "packs",
    "train_pairs",
    "fold",
    "flip",
    "distance",
    "batch_size",
    "device",
    "runtime",
    "out",
    "identification",
)
"""The settings `facetool eval` takes as options (every other one: `--set key=value`)."""
NAMES = {"packs": "--pack"}
METAVARS = {"packs": "PACK", "fold": "K"}


def _params() -> list[inspect.Parameter]:
    return [
        argument(
            "checkpoints",
            list[Path],
            metavar="CKPT",
            help="facetool checkpoint or facenet-pytorch weights; several are evaluated as one ensemble.",
        ),
        *setting_options(EvalConfig, OPTIONS, names=NAMES, metavars=METAVARS),
        option("sets", list[str] | None, "--set", help="Any EvalConfig setting as key=value (repeatable)."),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="eval", help=HELP)(command_with(eval_command, _params()))


def eval_command(**options: Any) -> None:
    """Score the checkpoints (or packs), print the report and where it was written."""
    from facetool.evaluation.pipeline import evaluate_checkpoint
    from facetool.evaluation.report import render_report

    checkpoints = options["checkpoints"]
    config = build_config(EvalConfig, None, options["sets"], given(options, OPTIONS))
    console = literal_console()
    if config.packs:
        from facetool.evaluation.pipeline import evaluate_packs
        from facetool.evaluation.report import pack_table

        reports, written = evaluate_packs(checkpoints, config)
        console.print(pack_table(reports))
        console.print(f"wrote {written}", highlight=False)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            outcome = evaluate_checkpoint(
                checkpoints,
                config,
                detect_progress=lambda p: show("detecting faces", p.done, p.total),
                embed_progress=lambda done, total: show("embedding", done, total),
            )
        except KeyboardInterrupt:
            bar.stop()
            literal_console(stderr=True).print(
                "interrupted (detected faces stay in the cache; rerun to resume)"
            )
            raise typer.Exit(INTERRUPTED_EXIT) from None
    render_report(outcome.report, console)
    console.print(f"wrote {outcome.report_path} and {outcome.roc_path}", highlight=False)
