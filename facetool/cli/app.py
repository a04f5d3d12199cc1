"""The `facetool` command: one Typer app; each sub-module adds its commands.

Every way a command can end is decided here, once: a user-caused error is one line on stderr (exit 2 for
usage, 1 for a failure), Ctrl-C is one line and exit 130, SIGTERM one line and exit 143, and `--verbose`
adds the traceback.

A Ctrl-C is never raised inside an import: raised while a C extension initialises (torch calls back into
Python then), the KeyboardInterrupt crosses C++ code that cannot unwind it and the process aborts
(`terminate called after throwing an instance of 'python_error'`, exit 134) or crashes. So SIGINT and SIGTERM
are held while this module loads (typer, rich, every command module) and, while a command runs, for as long
as an import is in progress in the main thread; the held signal is then honoured like any other.
"""

from __future__ import annotations

import builtins
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    verbose = False
    signum = 0
    main_pid = 0
    unraisable_hook: Any = None
    starting = False  # this module is loading: every stop signal is held
    importing = 0  # depth of the imports in progress in the main thread
    held = 0  # a stop signal that arrived while starting or importing, not yet raised


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the command (held during an import); a forked child dies
    the default way."""
    if os.getpid() != _State.main_pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _State.starting or _State.importing:
        _State.held = _State.held or signum
        return
    _State.signum, _State.held = signum, 0
    raise KeyboardInterrupt


def _raise_held_signal() -> None:
    """Raise, as a KeyboardInterrupt, a stop signal held while the CLI loaded or an import ran."""
    if _State.held:
        _on_signal(_State.held, None)


_builtin_import = builtins.__import__


def _import_holding_signals(name: str, *args: Any, **kwargs: Any) -> Any:
    """`builtins.__import__` while a command runs: a stop signal arriving during an import of the main thread
    is raised only once the outermost import has finished."""
    if threading.get_ident() != threading.main_thread().ident:
        return _builtin_import(name, *args, **kwargs)
    _State.importing += 1
    try:
        return _builtin_import(name, *args, **kwargs)
    finally:
        _State.importing -= 1
        if not _State.importing and not _State.starting:
            _raise_held_signal()


def _hold_signals_while_loading() -> dict[int, Any]:
    """Hold SIGINT and SIGTERM while this module imports its dependencies; the handlers replaced.

    Only Python's default handlers are replaced, and only in the main thread: a program that set its own, or
    a shell that started the command with SIGINT ignored, keeps them.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    _State.main_pid, _State.starting = os.getpid(), True
    defaults = (signal.default_int_handler, signal.SIG_DFL)
    return {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS if signal.getsignal(sig) in defaults}


def _end_loading(replaced: dict[int, Any]) -> None:
    """Give back the handlers `_hold_signals_while_loading` replaced; a held signal waits for `main()`."""
    _State.starting = False
    for sig, handler in replaced.items():
        signal.signal(sig, handler)


_loading = _hold_signals_while_loading()

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

import facetool  # noqa: E402
from facetool.cli.output import labelled, literal_console  # noqa: E402
from facetool.errors import FacetoolError  # noqa: E402

INTERRUPT_EXIT = 128 + signal.SIGINT
VERBOSE = "--verbose"


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
            raise Interrupted(_State.signum or signal.SIGINT) from exc


app = typer.Typer(
    name="facetool",
    cls=_Group,
    help="Train and evaluate FaceNet-style face embeddings (SSD detection, triplet loss, LFW protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = literal_console(stderr=True)


def _register_commands() -> None:
    from facetool.cli import (
        dataset,
        demo,
        detect,
        embed,
        evaluate,
        export,
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
        plot,
        plugins,
        demo,
        info,
    ):
        module.register(app)


_register_commands()
_end_loading(_loading)


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


_REARM_SECONDS = 0.005


def _rearm_swallowed_interrupt(unraisable: Any) -> None:
    """`sys.unraisablehook`: an interrupt raised inside a finalizer or weakref callback is raised again later.

    Python cannot propagate an exception out of those callbacks and drops it ("Exception ignored in ..."), so
    a signal handled there would be lost and the command would run on. A timer raises it again a moment later,
    once the callback has returned (raising it here would only be dropped again).
    """
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and os.getpid() == _State.main_pid:
        signal.setitimer(signal.ITIMER_REAL, _REARM_SECONDS)
        return
    (_State.unraisable_hook or sys.__unraisablehook__)(unraisable)


def _on_rearm_timer(signum: int, frame: FrameType | None) -> None:
    _on_signal(_State.signum or signal.SIGINT, frame)


@contextmanager
def _interrupting_signals() -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, and none is lost.

    SIGALRM is borrowed for the block: its timer raises again an interrupt that Python dropped. Imports hold
    the signals (`_import_holding_signals`).
    """
    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_rearm_timer)
    _State.unraisable_hook, sys.unraisablehook = sys.unraisablehook, _rearm_swallowed_interrupt
    builtins.__import__ = _import_holding_signals
    try:
        yield
    finally:
        builtins.__import__ = _builtin_import
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = _State.unraisable_hook
        _State.unraisable_hook = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt_cause(exc: BaseException) -> bool:
    """Whether a FacetoolError was raised while handling a KeyboardInterrupt (a command's own Ctrl-C line)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _forget_caught_interrupt() -> None:
    """Keep the exit code given to `sys.exit` after a caught Ctrl-C.

    When the interrupt surfaced inside code CPython evaluates from a string (as happens during some imports),
    CPython can remember it as unhandled although it was caught, and at exit kill the process with SIGINT
    instead (seen as exit -2 in about half the runs interrupted during an import); evaluating a string resets
    that record.
    """
    exec("None")


def _exit_code_of_signal() -> int:
    return 128 + (_State.signum or signal.SIGINT)


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
    _State.verbose, _State.signum, _State.main_pid = VERBOSE in args, 0, os.getpid()
    with _interrupting_signals():
        code = _run(args)
    _forget_caught_interrupt()
    if code:
        sys.exit(code)


def _run(args: list[str]) -> int:
    """Run the app and turn what it raised into a printed line and an exit code."""
    try:
        _raise_held_signal()
        result = app(args=args, prog_name="facetool", standalone_mode=False)
    except KeyboardInterrupt:
        _print_error("interrupted", "stopped")
        return _exit_code_of_signal()
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
        return _exit_code_of_signal() if _interrupt_cause(exc) else exc.exit_code
    except Exception as exc:  # anything unexpected still ends in one line unless --verbose
        if _State.verbose:
            traceback.print_exc()
        else:
            _print_error(f"{type(exc).__name__}: {exc} (run with --verbose for details)", "internal error")
        return 1
    if isinstance(result, int) and not isinstance(result, bool):
        if result == INTERRUPT_EXIT and _State.signum:
            return _exit_code_of_signal()
        return result
    return 0
