"""`facetool dataset stats | filter | merge` (import | export: facetool.cli.interchange): parse options, call facetool.curation, render with rich."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from facetool.cli import interchange
from facetool.cli.clean import register_clean
from facetool.cli.options import argument, command_with, given, option, setting_options
from facetool.cli.output import labelled, literal_console
from facetool.config.base import build_config
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


FILTER_OPTIONS = (
    "min_images",
    "max_images",
    "exclude_pairs",
    "fold",
    "include",
    "exclude",
    "keep_pairs",
    "jpeg_quality",
)
"""The settings of `dataset filter`, every one an option."""
FILTER_METAVARS = {
    "min_images": "N",
    "max_images": "N",
    "exclude_pairs": "FILE",
    "fold": "K",
    "include": "FILE",
    "exclude": "FILE",
    "keep_pairs": "FILE",
    "jpeg_quality": "Q",
}


def _filter_params() -> list[inspect.Parameter]:
    return [
        argument("cache", Path, metavar="CACHE", help="Input face cache."),
        option("output", Path, "--output", "-o", default=..., metavar="OUT", help="Face cache to write."),
        *setting_options(FilterSettings, FILTER_OPTIONS, metavars=FILTER_METAVARS),
        option("as_json", bool, "--json", default=False, help="Print the report as JSON."),
    ]


def filter_command(**options: Any) -> None:
    """Write the filtered cache; print what was kept and dropped, and why."""
    from facetool.curation import filter_cache

    cache, output = options["cache"], options["output"]
    settings = build_config(FilterSettings, None, None, given(options, FILTER_OPTIONS))
    report = filter_cache(cache, output, settings)
    if options["as_json"]:
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

    sub.command(
        name="filter", help="Write a filtered copy of a face cache (stored images copied unchanged)."
    )(command_with(filter_command, _filter_params()))

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
