"""`facetool dataset` (placeholder until its issue lands)."""

import typer

from facetool.cli._stub import not_yet


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Inspect and filter face caches.", no_args_is_help=True)
    app.add_typer(sub, name="dataset")

    @sub.command(name="stats", help="Statistics of a face cache or directory.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def stats_command() -> None:
        not_yet("dataset stats")

    @sub.command(name="filter", help="Write a filtered copy of a face cache.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def filter_command() -> None:
        not_yet("dataset filter")

    @sub.command(name="merge", help="Merge face caches.", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def merge_command() -> None:
        not_yet("dataset merge")
