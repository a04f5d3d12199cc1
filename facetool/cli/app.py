"""The `facetool` command: one Typer app; each sub-module adds its commands."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import NoArgsIsHelpError

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
    from facetool.cli import dataset, demo, detect, embed, evaluate, plot, plugins, protocol, train
    from facetool.cli import export as export_cli
    from facetool.cli import verify as verify_cli

    for module in (detect, dataset, train, evaluate, protocol, embed, plot, plugins, demo):
        module.register(app)
    for module in (export_cli, verify_cli):
        module.register(app)


_register_commands()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", help="Show the full traceback of an error."),
) -> None:
    """facetool: FaceNet-style face embeddings from detection to LFW verification."""


def _print_usage_error(exc: typer.TyperException) -> None:
    """A command-line usage error as one line, with the command's --help to try."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
    _print_error(f"{exc.format_message()}{hint}")


def _print_error(message: str, label: str = "error") -> None:
    """One line on stderr, whatever newlines or markup-like brackets the message holds."""
    line = " ".join(message.split())
    err_console.print(f"[bold red]{label}:[/bold red] {escape(line)}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a user-caused error ends in one line on stderr (exit 2 usage, 1 failure)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    try:
        result = app(args=args, prog_name="facetool", standalone_mode=False)
    except NoArgsIsHelpError:
        sys.exit(2)
    except typer.TyperException as exc:
        _print_usage_error(exc)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        _print_error("aborted")
        sys.exit(1)
    except FacetoolError as exc:
        if verbose:
            traceback.print_exc()
        _print_error(str(exc))
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected still ends in one line unless --verbose
        if verbose:
            traceback.print_exc()
        else:
            _print_error(f"{type(exc).__name__}: {exc} (run with --verbose for details)", "internal error")
        sys.exit(1)
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)
