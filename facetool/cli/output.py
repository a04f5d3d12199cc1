"""The consoles every command prints through: whatever a user named (paths, identities, plugin text) is printed
literally, never read as rich markup.

A path such as `Wedding [final]/x.jpg` or `a[/]b` is a valid file name; read as markup it loses its bracket
part or raises a MarkupError. So these consoles have markup off, and colour comes only from `labelled`, which
styles a fixed label and appends the text as is.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def literal_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that prints strings, table cells and titles literally."""
    return Console(stderr=stderr, markup=False)


def labelled(label: str, style: str, text: str) -> Text:
    """`label text`, with only the label styled and the text printed literally."""
    return Text.assemble((label, style), " ", text)
