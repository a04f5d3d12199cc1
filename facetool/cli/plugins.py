"""`facetool plugins` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Plugins: miners and backbones from entry points.", no_args_is_help=True)
    app.add_typer(sub, name="plugins")

    @sub.command(name="list", help="List miners and backbones and the packages that provide them.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def list_command() -> None:
        not_yet("plugins list")
