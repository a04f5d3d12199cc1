"""nox sessions: `nox -s tests`, `nox -s lint`, `nox -s demo` (each in a fresh virtual environment), `nox -s wheel`."""

import os

import nox

nox.options.sessions = ["lint", "tests"]
# the exact versions CI tests (constraints.txt), as the README's command lines install them
PACKAGES = ["-c", "constraints.txt", "-e", ".[test]", "-e", "plugins/facetool-extras"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite; real-data tests need FACETOOL_SHARED (default ../shared)."""
    session.install(*PACKAGES)
    env = {"FACETOOL_SHARED": os.environ.get("FACETOOL_SHARED", os.path.abspath("../shared"))}
    session.run("pytest", "-q", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("-c", "constraints.txt", "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The embedded default: the whole pipeline on a synthetic data set."""
    session.install(*PACKAGES)
    session.run("facetool", "demo", *session.posargs)


@nox.session(python=False)
def wheel(session: nox.Session) -> None:
    """The built wheels in a fresh virtual environment, run from outside the source tree (.ci/wheel-check)."""
    session.run("bash", ".ci/wheel-check", external=True)
