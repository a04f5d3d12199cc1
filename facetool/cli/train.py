"""`facetool train` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    @app.command(name="train", help="Train an embedding with the FaceNet triplet loop.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train_command() -> None:
        not_yet("train")
