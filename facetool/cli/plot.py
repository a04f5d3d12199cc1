"""`facetool plot RUN_DIR`: the PNG curves of a training run from its history.json."""

from __future__ import annotations

from pathlib import Path

import typer

from facetool.cli.output import literal_console


def register(app: typer.Typer) -> None:
    @app.command(
        name="plot", help="Plot the curves of a training run (loss, learning rate, triplets, accuracy)."
    )
    def plot_command(
        run_dir: Path = typer.Argument(..., help="Run directory holding history.json."),
        out_dir: Path | None = typer.Option(
            None, "--out", "-o", help="Folder for the PNGs (default: RUN_DIR)."
        ),
    ) -> None:
        from facetool.training.plots import plot_run

        console = literal_console()
        for path in plot_run(run_dir, out_dir):
            console.print(f"wrote {path}", highlight=False)
