"""`facetool demo` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    @app.command(name="demo", help="Run the whole pipeline on a small synthetic data set.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def demo_command() -> None:
        not_yet("demo")
