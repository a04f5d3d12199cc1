"""`facetool train`: parse options into a TrainConfig, resolve the data to a face cache, run
`facetool.training.loop.train`, show a summary."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from facetool.cli.options import command_with, given, option, setting_options
from facetool.cli.output import literal_console
from facetool.config.base import collect_overrides, dump_toml, field_help
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, FacetoolError
from facetool.training.progress import RichProgress

if TYPE_CHECKING:
    from facetool.training.loop import TrainResult


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def summary_table(result: TrainResult) -> Table:
    """The end-of-run summary: what was trained, the final figures and where the files are."""
    last = result.history[-1] if result.history else {}
    val_losses = [r["val_loss"] for r in result.history if r.get("val_loss") is not None]
    table = Table(title="training finished", show_header=False)
    rows = [
        ("run directory", str(result.run_dir)),
        ("epochs", str(result.epochs)),
        ("resumed from", str(result.resumed_from) if result.resumed_from else "-"),
        (
            "identities",
            f"{result.train_identities} training, {result.val_identities} validation, "
            f"{result.dropped_identities} left out (< 2 images)",
        ),
        ("final training loss", _fmt(last.get("train_loss"))),
        ("final validation loss", _fmt(last.get("val_loss"))),
        ("best validation loss", _fmt(min(val_losses) if val_losses else None)),
        ("final validation accuracy", _fmt(last.get("val_accuracy"))),
        ("learning rate", _fmt(last.get("learning_rate"), ".3g")),
        ("duration", f"{result.duration_s:.1f} s"),
        ("last checkpoint", str(result.last_checkpoint)),
        ("best checkpoint", str(result.best_checkpoint) if result.best_checkpoint else "-"),
        ("plots", ", ".join(p.name for p in result.plots) or "-"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


OPTIONS = (
    "data_dir",
    "num_epochs",
    "learning_rate",
    "batch_size",
    "alpha",
    "people_per_batch",
    "images_per_person",
    "pretrained",
    "checkpoint_dir",
    "device",
    "seed",
    "threads",
)
"""The settings `facetool train` takes as options (every other one: `--set key=value` or the config file)."""
NAMES = {"data_dir": "--data"}
HELPS = {
    "checkpoint_dir": field_help(TrainConfig, "checkpoint_dir").replace(
        ". (default", "; with --resume FILE: the folder of FILE (default"
    )
}


def _params() -> list[inspect.Parameter]:
    return [
        option(
            "config",
            Path | None,
            "--config",
            "-c",
            help="TOML file of TrainConfig settings: top level or a [train] table (a protocol recipe).",
        ),
        *setting_options(TrainConfig, OPTIONS, names=NAMES, helps=HELPS),
        option(
            "settings",
            list[str] | None,
            "--set",
            metavar="KEY=VALUE",
            help="Any setting, e.g. --set backbone.head=gdc (repeatable).",
        ),
        option(
            "resume",
            str | None,
            "--resume",
            help="Checkpoint to continue from, or auto (the run folder's newest).",
        ),
        option(
            "overwrite",
            bool,
            "--overwrite",
            default=False,
            help="Replace the run already in the run folder (its checkpoints and history).",
        ),
        option(
            "nproc",
            int,
            "--nproc",
            default=1,
            min=1,
            help="Processes to train with DistributedDataParallel on this machine (like torchrun).",
        ),
        option(
            "print_config",
            bool,
            "--print-config",
            default=False,
            help="Print the resolved configuration as TOML and exit.",
        ),
    ]


def train_command(**options: Any) -> None:
    """Train an embedding with the FaceNet triplet loop."""
    resume, overwrite, nproc = options["resume"], options["overwrite"], options["nproc"]
    overrides = collect_overrides(options["settings"], given(options, OPTIONS))
    from facetool.training.resume import load_train_config

    resolved = load_train_config(options["config"], overrides, resume)
    if options["print_config"]:
        typer.echo(dump_toml(resolved.model_dump(mode="json")), nl=False)
        return
    from facetool.training.recipe import check_plugins

    check_plugins(resolved)
    resolved = _resolve_data(resolved, resume, overwrite)
    if nproc > 1:
        from facetool.training.distributed import launch, write_launch_config

        launch(write_launch_config(resolved), nproc, resume, overwrite)
        return
    console = literal_console(stderr=True)
    try:
        from facetool.training.loop import train

        result = train(resolved, resume=resume, overwrite=overwrite, progress=RichProgress(console))
    except KeyboardInterrupt:
        raise FacetoolError(
            f"interrupted; continue with --resume auto --checkpoint-dir {resolved.checkpoint_dir}"
        ) from None
    literal_console().print(summary_table(result))


def register(app: typer.Typer) -> None:
    app.command(name="train", help="Train an embedding with the FaceNet triplet loop.")(
        command_with(train_command, _params())
    )


def _resolve_data(config: TrainConfig, resume: str | None, overwrite: bool) -> TrainConfig:
    """The configuration with `data_dir` a face cache: an image folder is detected into the run folder.

    The run folder is checked first, so a refused start detects nothing and creates no folder.
    """
    from facetool.config.detect import DetectConfig
    from facetool.detection.resolve import resolve_faces
    from facetool.training.run_folder import CACHE_NAME, check_fresh_start

    if config.data_dir is None:
        raise ConfigError("data_dir: not set (give --data or data_dir in the config file)")
    run_dir = Path(config.checkpoint_dir)
    check_fresh_start(run_dir, resume=resume is not None, overwrite=overwrite)
    resolved = resolve_faces(
        config.data_dir,
        run_dir / CACHE_NAME,
        DetectConfig(image_size=config.image_size),
        say=literal_console(stderr=True).print,
    )
    return config.model_copy(update={"data_dir": resolved.cache})
