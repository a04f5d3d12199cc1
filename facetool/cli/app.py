"""The `facetool` command: one Typer app; each sub-module adds its commands.

Every way a command can end is decided here, once: a user-caused error is one line on stderr (exit 2 for
usage, 1 for a failure), Ctrl-C is one line and exit 130, SIGTERM one line and exit 143, and `--verbose`
adds the traceback.

Stop signals are held while this module loads (typer, rich, every command module) and never raised inside an
import (facetool.cli.signals).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

from facetool.cli import signals

_loading = signals.hold_while_loading()

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

import facetool  # noqa: E402
from facetool.cli.output import labelled, literal_console  # noqa: E402
from facetool.errors import FacetoolError  # noqa: E402

INTERRUPT_EXIT = 128 + signal.SIGINT
VERBOSE = "--verbose"


class _State:
    verbose = False


class Interrupted(BaseException):
    """A KeyboardInterrupt (Ctrl-C or SIGTERM) that left a command; carries the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Group(TyperGroup):
    """The root group: a KeyboardInterrupt out of any command becomes `Interrupted` before Typer swallows it."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted(signals.State.signum or signal.SIGINT) from exc


app = typer.Typer(
    name="facetool",
    cls=_Group,
    help="Train and evaluate FaceNet-style face embeddings (SSD detection, triplet loss, LFW protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are literal: `[train]` is a TOML table, not a style
)

err_console = literal_console(stderr=True)


def _register_commands() -> None:
    from facetool.cli import (
        cluster,
        dataset,
        demo,
        detect,
        embed,
        evaluate,
        export,
        identify,
        info,
        plot,
        plugins,
        protocol,
        train,
        verify,
    )

    for module in (
        detect,
        dataset,
        train,
        evaluate,
        protocol,
        embed,
        export,
        verify,
        identify,
        cluster,
        plot,
        plugins,
        demo,
        info,
    ):
        module.register(app)


_register_commands()
signals.end_loading(_loading)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"facetool {facetool.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, VERBOSE, help="Show the full traceback of an error."),
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """facetool: FaceNet-style face embeddings from detection to LFW verification."""
    _State.verbose = verbose


def _print_usage_error(exc: typer.TyperException) -> None:
    """A command-line usage error as one line, with the command's --help to try."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
    _print_error(f"{exc.format_message()}{hint}")


def _print_error(message: str, label: str = "error") -> None:
    """One line on stderr, whatever newlines or markup-like brackets the message holds."""
    line = " ".join(message.split())
    err_console.print(labelled(f"{label}:", "bold red", line), highlight=False, soft_wrap=True)


def _interrupt_cause(exc: BaseException) -> bool:
    """Whether a FacetoolError was raised while handling a KeyboardInterrupt (a command's own Ctrl-C line)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _root_args(args: list[str]) -> list[str]:
    """`--verbose` is a root option; it may also be written after the command, so it is moved in front."""
    if VERBOSE not in args:
        return args
    return [VERBOSE, *(a for a in args if a != VERBOSE)]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every ending is one line on stderr and an exit code (2 usage, 1 failure, 130/143 signal).

    A stop signal held while the CLI loaded ends it at once, the same way.
    """
    args = _root_args(list(sys.argv[1:] if argv is None else argv))
    _State.verbose, signals.State.signum, signals.State.main_pid = VERBOSE in args, 0, os.getpid()
    with signals.interrupting_signals():
        code = _run(args)
    signals.forget_caught_interrupt()
    if code:
        sys.exit(code)


def _run(args: list[str]) -> int:
    """Run the app and turn what it raised into a printed line and an exit code."""
    try:
        signals.raise_held_signal()
        result = app(args=args, prog_name="facetool", standalone_mode=False)
    except KeyboardInterrupt:
        _print_error("interrupted", "stopped")
        return signals.exit_code_of_signal()
    except Interrupted as exc:
        if _State.verbose and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        _print_error("interrupted", "stopped")
        return 128 + exc.signum
    except typer.TyperException as exc:
        if not exc.format_message().strip():  # a group run without a command: its help is already shown
            return 2
        _print_usage_error(exc)
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        _print_error("aborted")
        return 1
    except FacetoolError as exc:
        if _State.verbose:
            traceback.print_exc()
        _print_error(str(exc), "stopped" if _interrupt_cause(exc) else "error")
        return signals.exit_code_of_signal() if _interrupt_cause(exc) else exc.exit_code
    except Exception as exc:  # anything unexpected still ends in one line unless --verbose
        if _State.verbose:
            traceback.print_exc()
        else:
            _print_error(f"{type(exc).__name__}: {exc} (run with --verbose for details)", "internal error")
        return 1
    if isinstance(result, int) and not isinstance(result, bool):
        if result == INTERRUPT_EXIT and signals.State.signum:
            return signals.exit_code_of_signal()
        return result
    return 0
