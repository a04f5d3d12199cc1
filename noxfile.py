"""nox sessions: `nox -s tests`, `nox -s lint`, `nox -s demo` (each in a fresh virtual environment)."""

import os

import nox

nox.options.sessions = ["lint", "tests"]
PACKAGES = ["-e", ".[test]", "-e", "plugins/facetool-extras"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite; real-data tests need FACETOOL_SHARED (default ../shared)."""
    session.install(*PACKAGES)
    env = {"FACETOOL_SHARED": os.environ.get("FACETOOL_SHARED", os.path.abspath("../shared"))}
    session.run("pytest", "-q", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The embedded default: the whole pipeline on a synthetic data set."""
    session.install(*PACKAGES)
    session.run("facetool", "demo", *session.posargs)
