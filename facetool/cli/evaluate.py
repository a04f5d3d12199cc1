"""`facetool eval` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    @app.command(name="eval", help="Evaluate a checkpoint on the LFW verification protocol.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def eval_command() -> None:
        not_yet("eval")
