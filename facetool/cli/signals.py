"""Stop signals for the CLI: SIGINT and SIGTERM become one KeyboardInterrupt in the main thread, never lost and
never raised inside an import.

A Ctrl-C is never raised inside an import: raised while a C extension initialises (torch calls back into
Python then), the KeyboardInterrupt crosses C++ code that cannot unwind it and the process aborts
(`terminate called after throwing an instance of 'python_error'`, exit 134) or crashes. So SIGINT and SIGTERM
are held while the CLI loads (`hold_while_loading` / `end_loading`) and, while a command runs
(`interrupting_signals`), for as long as an import is in progress in the main thread; the held signal is then
honoured like any other. SIGALRM is borrowed while a command runs, to raise again an interrupt that Python
dropped inside a finalizer.
"""

from __future__ import annotations

import builtins
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class State:
    """What the signal handlers share with the CLI."""

    signum = 0
    main_pid = 0
    unraisable_hook: Any = None
    starting = False  # this module is loading: every stop signal is held
    importing = 0  # depth of the imports in progress in the main thread
    held = 0  # a stop signal that arrived while starting or importing, not yet raised


def on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the command (held during an import); a forked child dies
    the default way."""
    if os.getpid() != State.main_pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if State.starting or State.importing:
        State.held = State.held or signum
        return
    State.signum, State.held = signum, 0
    raise KeyboardInterrupt


def raise_held_signal() -> None:
    """Raise, as a KeyboardInterrupt, a stop signal held while the CLI loaded or an import ran."""
    if State.held:
        on_signal(State.held, None)


_builtin_import = builtins.__import__


def _import_holding_signals(name: str, *args: Any, **kwargs: Any) -> Any:
    """`builtins.__import__` while a command runs: a stop signal arriving during an import of the main thread
    is raised only once the outermost import has finished."""
    if threading.get_ident() != threading.main_thread().ident:
        return _builtin_import(name, *args, **kwargs)
    State.importing += 1
    try:
        return _builtin_import(name, *args, **kwargs)
    finally:
        State.importing -= 1
        if not State.importing and not State.starting:
            raise_held_signal()


def hold_while_loading() -> dict[int, Any]:
    """Hold SIGINT and SIGTERM while this module imports its dependencies; the handlers replaced.

    Only Python's default handlers are replaced, and only in the main thread: a program that set its own, or
    a shell that started the command with SIGINT ignored, keeps them.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    State.main_pid, State.starting = os.getpid(), True
    defaults = (signal.default_int_handler, signal.SIG_DFL)
    return {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS if signal.getsignal(sig) in defaults}


def end_loading(replaced: dict[int, Any]) -> None:
    """Give back the handlers `hold_while_loading` replaced; a held signal waits for `main()`."""
    State.starting = False
    for sig, handler in replaced.items():
        signal.signal(sig, handler)


_REARM_SECONDS = 0.005


def _rearm_swallowed_interrupt(unraisable: Any) -> None:
    """`sys.unraisablehook`: an interrupt raised inside a finalizer or weakref callback is raised again later.

    Python cannot propagate an exception out of those callbacks and drops it ("Exception ignored in ..."), so
    a signal handled there would be lost and the command would run on. A timer raises it again a moment later,
    once the callback has returned (raising it here would only be dropped again).
    """
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and os.getpid() == State.main_pid:
        signal.setitimer(signal.ITIMER_REAL, _REARM_SECONDS)
        return
    (State.unraisable_hook or sys.__unraisablehook__)(unraisable)


def _on_rearm_timer(signum: int, frame: FrameType | None) -> None:
    on_signal(State.signum or signal.SIGINT, frame)


@contextmanager
def interrupting_signals() -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, and none is lost.

    SIGALRM is borrowed for the block: its timer raises again an interrupt that Python dropped. Imports hold
    the signals (`_import_holding_signals`).
    """
    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_rearm_timer)
    State.unraisable_hook, sys.unraisablehook = sys.unraisablehook, _rearm_swallowed_interrupt
    builtins.__import__ = _import_holding_signals
    try:
        yield
    finally:
        builtins.__import__ = _builtin_import
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = State.unraisable_hook
        State.unraisable_hook = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def forget_caught_interrupt() -> None:
    """Keep the exit code given to `sys.exit` after a caught Ctrl-C.

    When the interrupt surfaced inside code CPython evaluates from a string (as happens during some imports),
    CPython can remember it as unhandled although it was caught, and at exit kill the process with SIGINT
    instead (seen as exit -2 in about half the runs interrupted during an import); evaluating a string resets
    that record.
    """
    exec("None")


def exit_code_of_signal() -> int:
    return 128 + (State.signum or signal.SIGINT)
