"""`facetool dataset import | export`: the field's formats (RecordIO sets, verification packs) in and out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetool.cli.output import literal_console


def _rows(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title)
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def register(sub: typer.Typer) -> None:
    @sub.command(
        name="import",
        help="Import a RecordIO set (train.rec + .idx, or its folder), an im2rec .lst with its images, or a "
        "verification pack (.bin, then a pairs file beside the cache) into a face cache. Images are stored as "
        "they are; the cache records them as pre-aligned (no detector).",
    )
    def import_command(
        source: Annotated[
            Path, typer.Argument(metavar="SRC", help=".rec, its folder, a .lst, or a pack .bin.")
        ],
        output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="Face cache to write.")],
        images: Annotated[
            Path | None,
            typer.Option(
                "--images", metavar="DIR", help="With a .lst: its image folder (default: the list's)."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        from facetool.formats.importing import import_source

        report = import_source(source, output, images)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
            return
        rows = [
            ("source", f"{report.source} ({report.kind})"),
            ("images", f"{report.images:,}"),
            ("identities", f"{report.identities:,}"),
            ("image size / JPEG quality", f"{report.image_size} / {report.jpeg_quality}"),
            ("written to", str(report.output)),
        ]
        if report.pairs is not None:
            rows.append(("pairs file", str(report.pairs)))
        literal_console().print(_rows("import", rows))

    @sub.command(
        name="export",
        help="Export a face cache as an insightface RecordIO set (train.rec, train.idx, property; header-record "
        "layout), or with --pack PAIRS as a verification pack of those pairs (LFW pairs file or CSV), in fold "
        "order, so that insightface's 10 contiguous folds are the folds eval scores the file with.",
    )
    def export_command(
        cache: Annotated[Path, typer.Argument(metavar="CACHE", help="Face cache to export.")],
        output: Annotated[
            Path,
            typer.Option("--output", "-o", metavar="OUT", help="train.rec (or its folder), or the pack."),
        ],
        pack: Annotated[
            Path | None,
            typer.Option("--pack", metavar="PAIRS", help="Write a verification pack of these pairs."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        from facetool.evaluation.packs import pack_pairs
        from facetool.evaluation.pairs import read_pairs
        from facetool.formats.exporting import export_pack, export_recordio

        if pack is not None:
            report = export_pack(cache, pack_pairs(read_pairs(pack)), output)
        else:
            report = export_recordio(cache, output)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
            return
        rows = [("images", f"{report.images:,}"), ("identities", f"{report.identities:,}")]
        rows += [("wrote", str(path)) for path in report.files]
        literal_console().print(_rows("export", rows))
