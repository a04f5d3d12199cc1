"""`facetool protocol`: the LFW verification protocol from the image folder to the accuracy, in one command."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from facetool.cli.options import command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
from facetool.config.protocol import ProtocolConfig

if TYPE_CHECKING:
    from facetool.protocol import ProtocolResult

HELP = "\n\n".join(
    [
        "Run the LFW protocol end to end with the test people never seen in training.",
        "View 1: train on the people not in pairsDevTest.txt, pick the threshold on pairsDevTrain.txt, score "
        "pairsDevTest.txt. View 2: one model per fold, trained without that fold's people, scored on it.",
        "threshold_holdout = 0.1 (or --set threshold_holdout=0.1) leaves a tenth of the training people out of "
        "training too and picks the threshold on pairs among them: the view's own threshold pairs name "
        "trained people, which puts a class-based loss's threshold too low for new ones.",
        "--config is a TOML file of protocol settings with a [train] table holding the training recipe "
        "(the keys of `facetool train`). Everything goes into --out; a rerun continues an unfinished run.",
    ]
)


RESULT_HEADER = (
    "split",
    "train people",
    "train images",
    "epochs",
    "train s",
    "accuracy",
    "VAL@FAR=1e-3",
    "AUC",
)


def result_rows(result: ProtocolResult) -> list[list[str]]:
    """One row per split, then the mean over them: the printed table's and the benchmark record's."""
    rows = [
        [
            s.name,
            f"{s.train_identities:,}",
            f"{s.train_images:,}",
            str(s.epochs),
            f"{s.train_seconds:,.0f}",
            f"{s.accuracy:.4f}",
            f"{s.val:.4f}",
            f"{s.auc:.4f}",
        ]
        for s in result.splits
    ]
    mean = f"{result.accuracy:.4f} ± {result.accuracy_std:.4f}"
    return [*rows, [f"mean of {len(result.splits)}", "", "", "", "", mean, "", ""]]


def result_table(result: ProtocolResult) -> Table:
    """The rows of `result_rows`, the mean set apart."""
    table = Table(title=f"LFW View {result.view}: {result.path}")
    for name in RESULT_HEADER:
        table.add_column(name, justify="left" if name == "split" else "right")
    *splits, mean = result_rows(result)
    for row in splits:
        table.add_row(*row)
    table.add_section()
    table.add_row(*mean)
    return table


OPTIONS = ("lfw_dir", "faces", "view", "folds", "out")
"""The settings `facetool protocol` takes as options (every other one: `--set key=value` or the config file)."""
NAMES = {"folds": "--fold", "out": ("--out", "-o")}
HELPS = {"folds": "View 2: a fold to run, 1-10 (default all)."}


def _params() -> list[inspect.Parameter]:
    return [
        option("config", Path | None, "--config", "-c", help="TOML file of protocol settings and [train]."),
        *setting_options(ProtocolConfig, OPTIONS, names=NAMES, helps=HELPS),
        option(
            "sets",
            list[str] | None,
            "--set",
            help="Any setting as key=value, e.g. train.num_epochs=20 (repeatable).",
        ),
        option("as_json", bool, "--json", default=False, help="Print the result as JSON."),
    ]


def register(app: typer.Typer) -> None:
    app.command(name="protocol", help=HELP)(command_with(protocol_command, _params()))


def protocol_command(**options: Any) -> None:
    """Run the protocol; print its table (or JSON)."""
    settings = build_config(ProtocolConfig, options["config"], options["sets"], given(options, OPTIONS))
    from facetool.protocol import run_protocol
    from facetool.training.progress import RichProgress

    console = literal_console(stderr=True)
    result = run_protocol(
        settings,
        say=lambda text: console.print(labelled("›", "bold", text)),
        train_progress=RichProgress(console),
    )
    if options["as_json"]:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    literal_console().print(result_table(result))
