"""`facetool train`: parse options into a TrainConfig, run `facetool.train.loop.train`, show a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from facetool.config.base import dump_toml, parse_override
from facetool.errors import FacetoolError
from facetool.train.progress import RichProgress

if TYPE_CHECKING:
    from facetool.train.loop import TrainResult


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


def register(app: typer.Typer) -> None:
    @app.command(name="train", help="Train an embedding with the FaceNet triplet loop.")
    def train_command(
        config: Path | None = typer.Option(None, "--config", "-c", help="TOML file of TrainConfig settings."),
        data_dir: Path | None = typer.Option(
            None, "--data_dir", "--data-dir", "--data", help="Face cache or LFW-style image folder."
        ),
        num_epochs: int | None = typer.Option(None, "--num_epochs", "--num-epochs"),
        learning_rate: float | None = typer.Option(None, "--learning_rate", "--learning-rate"),
        batch_size: int | None = typer.Option(
            None, "--batch_size", "--batch-size", help="Images per step, a multiple of 3 (90 = 30 triplets)."
        ),
        alpha: float | None = typer.Option(None, "--alpha", help="Triplet-loss margin."),
        people_per_batch: int | None = typer.Option(None, "--people_per_batch", "--people-per-batch"),
        images_per_person: int | None = typer.Option(None, "--images_per_person", "--images-per-person"),
        pretrained: str | None = typer.Option(
            None, "--pretrained", help="none, vggface2, casia-webface, a file."
        ),
        checkpoint_dir: Path | None = typer.Option(
            None, "--checkpoint_dir", "--checkpoint-dir", help="Run directory."
        ),
        device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
        seed: int | None = typer.Option(None, "--seed"),
        settings: list[str] | None = typer.Option(
            None, "--set", help="Any setting as key=value (repeatable)."
        ),
        resume: str | None = typer.Option(None, "--resume", help="Checkpoint to continue from, or auto."),
        threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads (default: torch's)."),
        nproc: int = typer.Option(
            1,
            "--nproc",
            min=1,
            help="Processes to train with DistributedDataParallel on this machine (like torchrun).",
        ),
        print_config: bool = typer.Option(
            False,
            "--print-config",
            "--print_config",
            help="Print the resolved configuration as TOML and exit.",
        ),
    ) -> None:
        named = {
            "data_dir": data_dir,
            "num_epochs": num_epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "alpha": alpha,
            "people_per_batch": people_per_batch,
            "images_per_person": images_per_person,
            "pretrained": pretrained,
            "checkpoint_dir": checkpoint_dir,
            "device": device,
            "seed": seed,
            "threads": threads,
        }
        overrides = [parse_override(item) for item in settings or []]
        overrides += [(k, str(v) if isinstance(v, Path) else v) for k, v in named.items() if v is not None]
        from facetool.train.resume import load_train_config

        resolved = load_train_config(config, overrides, resume)
        if print_config:
            typer.echo(dump_toml(resolved.model_dump(mode="json")), nl=False)
            return
        if nproc > 1:
            from facetool.train.distributed import launch, write_launch_config

            launch(write_launch_config(resolved), nproc, resume)
            return
        console = Console(stderr=True)
        try:
            from facetool.train.loop import train

            result = train(resolved, resume=resume, progress=RichProgress(console))
        except KeyboardInterrupt:
            raise FacetoolError(
                f"interrupted; continue with --resume auto --checkpoint-dir {resolved.checkpoint_dir}"
            ) from None
        Console().print(summary_table(result))
