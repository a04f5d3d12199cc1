"""`facetool plugins list`: every miner and backbone, its package, version, description and status."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from facetool.plugins import PluginInfo, list_plugins

STATUS_STYLE = {"ok": "green", "broken": "bold red", "clash": "bold yellow"}


def render_plugins(rows: list[PluginInfo], console: Console) -> None:
    """A rich table, one row per registered name; a broken or clashing plugin shows its error."""
    table = Table(title="facetool plugins")
    for column in ("kind", "name", "package", "version", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", ratio=1)
    for row in rows:
        style = STATUS_STYLE.get(row.status, "")
        text = row.error if row.error else row.description
        table.add_row(row.kind, row.name, row.package, row.version, f"[{style}]{row.status}[/{style}]", text)
    console.print(table)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Plugins: miners and backbones from entry points.", no_args_is_help=True)
    app.add_typer(sub, name="plugins")

    @sub.command(name="list", help="List miners and backbones and the packages that provide them.")
    def list_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        rows = list_plugins()
        if as_json:
            typer.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        else:
            render_plugins(rows, Console())
