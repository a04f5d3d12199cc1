"""`facetool detect` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    @app.command(name="detect", help="Detect faces in an LFW-style directory and cache the crops to HDF5.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def detect_command() -> None:
        not_yet("detect")
