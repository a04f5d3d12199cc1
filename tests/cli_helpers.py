"""Running the CLI from tests in this process, for the many cases where a subprocess would only add start-up."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from facetool.cli.app import main


def facetool_in_process(*args: object) -> subprocess.CompletedProcess:
    """The same CLI entry point (`facetool.cli.app.main`) called in this process: the full argument parsing,
    validation and error rendering, without paying the 3-4 s interpreter and torch start-up of a subprocess."""
    out, err = io.StringIO(), io.StringIO()
    argv = [str(a) for a in args]
    code = 0
    with (
        tempfile.TemporaryDirectory() as cwd,  # default output folders (runs/...) land here, not in the checkout
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["facetool", *argv], code, out.getvalue(), err.getvalue())


def run_facetool(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the installed CLI in a real subprocess (`python -m facetool`) and capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "facetool", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
