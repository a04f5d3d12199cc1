"""`facetool plugins list`: every plugin, its package, version, description and status."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from facetool.cli.output import literal_console
from facetool.plugins import GROUPS, PluginInfo, list_plugins

STATUS_STYLE = {"ok": "green", "broken": "bold red", "clash": "bold yellow"}
KINDS = {kind: group for group, kind in GROUPS.items()}


def render_plugins(rows: list[PluginInfo], console: Console) -> None:
    """One rich table per kind, one row per registered name; a broken or clashing plugin shows its error.

    Plugin text is printed literally (never read as markup) and the description column wraps instead of
    being cut, down to an 80-column terminal.
    """
    for kind in dict.fromkeys(row.kind for row in rows):
        table = Table(title=f"{kind} plugins ({KINDS[kind]})")
        table.add_column("name", overflow="fold")
        table.add_column("package", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("description", ratio=1, min_width=20, overflow="fold")
        for row in (r for r in rows if r.kind == kind):
            table.add_row(
                Text(row.name),
                Text(f"{row.package} {row.version}"),
                Text(row.status, style=STATUS_STYLE.get(row.status, "")),
                Text(row.error if row.error else row.description),
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Plugins: miners, backbones, losses, training callbacks and face detectors from entry points.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="plugins")

    @sub.command(name="list", help="List plugins and the packages that provide them.")
    def list_command(
        pattern: Annotated[
            str | None, typer.Argument(help="Only names matching this shell-style pattern, e.g. 'semi*'.")
        ] = None,
        kind: Annotated[
            str | None, typer.Option("--kind", help=f"Only one kind: {', '.join(KINDS)}.")
        ] = None,
        package: Annotated[str | None, typer.Option("--package", help="Only one distribution.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        if kind is not None and kind not in KINDS:
            raise typer.BadParameter(f"{kind!r}: expected one of {', '.join(KINDS)}", param_hint="--kind")
        group = KINDS[kind] if kind is not None else None
        rows = list_plugins(group, pattern=pattern, package=package)
        if as_json:
            typer.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        else:
            render_plugins(rows, literal_console())
