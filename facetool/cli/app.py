"""The `facetool` command: one Typer app; each sub-module adds its commands."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.console import Console

from facetool.errors import FacetoolError

app = typer.Typer(
    name="facetool",
    help="Train and evaluate FaceNet-style face embeddings (SSD detection, triplet loss, LFW protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True)


def _register_commands() -> None:
    from facetool.cli import dataset, demo, detect, embed, evaluate, plot, plugins, train

    for module in (detect, dataset, train, evaluate, embed, plot, plugins, demo):
        module.register(app)


_register_commands()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", help="Show the full traceback of an error."),
) -> None:
    """facetool: FaceNet-style face embeddings from detection to LFW verification."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a user-caused error ends in one line on stderr (exit 2 usage, 1 failure)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    try:
        app(args=args, prog_name="facetool")
    except FacetoolError as exc:
        if verbose:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected still ends in one line unless --verbose
        if verbose:
            traceback.print_exc()
        else:
            err_console.print(
                f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc} (run with --verbose for details)",
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(1)
