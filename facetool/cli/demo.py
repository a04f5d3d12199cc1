"""`facetool demo`: the whole pipeline on an embedded default, for a fresh machine with no data set."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from facetool.cli.options import command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
from facetool.config.demo import DemoConfig

LFW_RECIPE = "benchmarks/recipes/lfw-view1-cpu-batch-hard-snapshots.toml"
"""The recommended CPU recipe for LFW, in facetool's repository."""

if TYPE_CHECKING:
    from facetool.demo import DemoResult


def _summary(result: DemoResult) -> Table:
    from facetool.demo import counted  # already imported by the run this summarises

    table = Table(title="facetool demo", show_header=False)
    kind = "synthetic face-like drawings (not photographs)" if result.synthetic else "your folder"
    det = result.detection
    table.add_row("data", f"{result.data_dir} ({kind})")
    table.add_row(
        "detection",
        f"{counted(det.images, 'image')}, {counted(det.faces, 'face')} found, "
        f"{counted(det.fallbacks, 'whole-image fallback')}, {counted(det.failures, 'failure')}",
    )
    last = result.training.history[-1] if result.training.history else {}
    table.add_row(
        "training",
        f"{counted(result.training.epochs, 'epoch')} in {result.training.duration_s:.0f} s, final loss {last.get('train_loss', float('nan')):.4f}",
    )
    for label, report in (("untrained network", result.untrained), ("trained network", result.trained)):
        if report is not None:
            table.add_row(
                label,
                f"accuracy {report.accuracy:.4f} ± {report.accuracy_std:.4f} on {report.num_pairs} pairs",
            )
    run_dir = result.training.run_dir
    table.add_row("run directory", str(run_dir))
    plots = sorted(run_dir.glob("*.png"))
    if plots:
        table.add_row("plots", "\n".join(str(path) for path in plots))
    if result.report_path is not None:
        table.add_row("report", f"{result.report_path} (ROC curve beside it)")
    table.add_row(
        "next",
        f"facetool eval {result.training.last_checkpoint} --data YOUR_FACES.h5, or the whole LFW protocol: "
        f"facetool protocol --config {LFW_RECIPE} (docs/evaluation.md)",
    )
    return table


OPTIONS = ("data", "out", "num_epochs", "device")
"""The settings `facetool demo` takes as options (every other one: `--set key=value`)."""
NAMES = {"out": ("--out", "-o"), "num_epochs": "--epochs"}


def _params() -> list[inspect.Parameter]:
    return [
        *setting_options(DemoConfig, OPTIONS, names=NAMES),
        option(
            "sets",
            list[str] | None,
            "--set",
            help="Any demo setting as key=value, e.g. identities=20 (repeatable).",
        ),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="demo", help="Run detect → train → eval on a small synthetic data set (or --data DIR).")(
        command_with(demo_command, _params())
    )


def demo_command(**options: Any) -> None:
    """Run the demo; print its summary."""
    config = build_config(DemoConfig, None, options["sets"], given(options, OPTIONS))
    from facetool.demo import run_demo
    from facetool.training.progress import RichProgress

    console = literal_console(stderr=True)
    result = run_demo(
        config,
        say=lambda text: console.print(labelled("›", "bold", text)),
        train_progress=RichProgress(console),
    )
    literal_console().print(_summary(result))
