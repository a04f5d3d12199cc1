"""`facetool plot` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    @app.command(name="plot", help="Plot the curves of a training run.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def plot_command() -> None:
        not_yet("plot")
