"""`facetool embed` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    @app.command(name="embed", help="Write embeddings of images, folders or face caches.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def embed_command() -> None:
        not_yet("embed")
