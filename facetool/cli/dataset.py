"""`facetool dataset stats | filter | merge` (import | export: facetool.cli.interchange): parse options, call facetool.curation, render with rich."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from facetool.cli import interchange
from facetool.cli.clean import register_clean
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config, field_help
from facetool.config.dataset import FilterSettings


def _table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title)
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, "-" if value is None else str(value))
    return table


def render_stats(stats: Any, console: Console) -> None:
    """The stats of a cache or directory as a two-column table."""
    rate = None if stats.detection_rate is None else f"{100 * stats.detection_rate:.2f} %"
    rows = [
        ("identities", f"{stats.identities:,}"),
        ("images", f"{stats.images:,}"),
        (
            "images per identity (min / median / max)",
            f"{stats.images_per_identity_min} / {stats.images_per_identity_median:g} / "
            f"{stats.images_per_identity_max}",
        ),
        ("identities with 2+ images", f"{stats.identities_with_2_plus:,}"),
        ("detected faces", stats.detected),
        ("fallbacks (whole image)", stats.fallbacks),
        ("failures" if stats.kind == "cache" else "scan problems", stats.failures),
        ("detection rate", rate),
    ]
    if stats.kind == "directory":
        rows.append(("empty identity folders", stats.empty_identities))
    else:
        rows.append(("image size / encoding", f"{stats.image_size} / {stats.encoding}"))
    console.print(_table(f"{stats.kind} {stats.source}", rows))


def render_reasons(title: str, kept: list[tuple[str, Any]], report: Any, console: Console) -> None:
    table = _table(title, kept)
    for reason, count in report.dropped_identities.items():
        table.add_row(f"dropped: {reason}", f"{count:,} identities, {report.dropped_images[reason]:,} images")
    for reason, count in report.dropped_images.items():
        if reason not in report.dropped_identities:
            table.add_row(f"dropped: {reason}", f"{count:,} images")
    console.print(table)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Inspect, filter, merge and clean face caches; import and export the field's formats.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="dataset")
    interchange.register(sub)
    register_clean(sub)

    @sub.command(name="stats", help="Statistics of a face cache or of an LFW-style image directory.")
    def stats_command(
        source: Annotated[
            Path,
            typer.Argument(metavar="CACHE_OR_DIR", help="Face cache (.h5) or DATA_DIR/<identity>/<image>."),
        ],
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    ) -> None:
        from facetool.curation import dataset_stats

        stats = dataset_stats(source)
        if as_json:
            typer.echo(json.dumps(stats.to_dict(), indent=2))
        else:
            render_stats(stats, literal_console())

    @sub.command(
        name="filter", help="Write a filtered copy of a face cache (stored images copied unchanged)."
    )
    def filter_command(
        cache: Annotated[Path, typer.Argument(metavar="CACHE", help="Input face cache.")],
        output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="Face cache to write.")],
        min_images: Annotated[
            int | None,
            typer.Option(
                metavar="N",
                help=field_help(FilterSettings, "min_images", "Drop identities with fewer images."),
            ),
        ] = None,
        max_images: Annotated[
            int | None,
            typer.Option(metavar="N", help="Keep at most N images per identity, the first by path."),
        ] = None,
        exclude_pairs: Annotated[
            list[Path] | None,
            typer.Option(
                metavar="FILE", help="Drop every identity named in this LFW pairs file (repeatable)."
            ),
        ] = None,
        fold: Annotated[
            int | None,
            typer.Option(
                metavar="K",
                help="With --exclude-pairs: drop only the people of fold K (1-10) of View 2's pairs.txt.",
            ),
        ] = None,
        include: Annotated[
            list[Path] | None,
            typer.Option(metavar="FILE", help="Keep only identities listed in this file (repeatable)."),
        ] = None,
        exclude: Annotated[
            list[Path] | None,
            typer.Option(metavar="FILE", help="Drop identities listed in this file (repeatable)."),
        ] = None,
        keep_pairs: Annotated[
            list[Path] | None,
            typer.Option(
                metavar="FILE",
                help="Also keep every image this pairs file names, whatever the other rules say (repeatable).",
            ),
        ] = None,
        jpeg_quality: Annotated[
            int | None,
            typer.Option(
                metavar="Q", help="Re-encode the faces as JPEG of quality Q (a smaller cache to carry)."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        from facetool.curation import filter_cache

        given = {
            "min_images": min_images,
            "max_images": max_images,
            "exclude_pairs": exclude_pairs,
            "fold": fold,
            "include": include,
            "exclude": exclude,
            "keep_pairs": keep_pairs,
            "jpeg_quality": jpeg_quality,
        }
        settings = build_config(FilterSettings, None, None, given)
        report = filter_cache(cache, output, settings)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
            return
        kept = [
            ("kept identities", f"{report.kept_identities:,}"),
            ("kept images", f"{report.kept_images:,}"),
            ("kept failures", f"{report.kept_failures:,}"),
            ("kept only for a pairs file", f"{report.kept_for_pairs:,}"),
            ("written to", str(output)),
        ]
        render_reasons(f"filter {cache}", kept, report, literal_console())

    @sub.command(
        name="merge",
        help="Merge face caches of the same image size, encoding, detector and crop settings into one.",
    )
    def merge_command(
        caches: Annotated[
            list[Path], typer.Argument(metavar="CACHE", help="Input face caches (two or more).")
        ],
        output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="Face cache to write.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        from facetool.curation import merge_caches

        report = merge_caches(caches, output)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
            return
        rows = [
            ("inputs", len(report.inputs)),
            ("images", f"{report.images:,}"),
            ("identities", f"{report.identities:,}"),
            ("failures", f"{report.failures:,}"),
            ("duplicate paths (kept once)", f"{report.duplicates:,}"),
            ("written to", str(output)),
        ]
        literal_console().print(_table("merge", rows))
        if report.duplicates:
            shown = ", ".join(report.duplicate_examples)
            literal_console(stderr=True).print(
                labelled(
                    "note:",
                    "yellow",
                    f"{report.duplicates} duplicate path(s) kept from the first input that has them, e.g. {shown}",
                ),
                highlight=False,
                soft_wrap=True,
            )
