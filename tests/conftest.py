"""Shared fixtures: where the read-only shared data lives, and running the real `facetool` command."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import run_facetool
from plugin_helpers import install_test_plugins

from facetool import plugins


@pytest.fixture(scope="session", autouse=True)
def core_test_backbone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `test-cnn` backbone installed for the session, in this process (sys.path) and in every subprocess a
    test starts (PYTHONPATH), so the core suite needs no facetool-extras (see plugin_helpers.install_test_plugins).

    To check that with an environment where facetool-extras is installed (editable), run the tests in a
    second virtual environment that links every entry of the first one's site-packages except the extras'
    (its `.pth` file and its dist-info), so that neither `import facetool_extras` nor its entry points exist,
    in this process or in the subprocesses it starts (`sys.executable` is that environment's python):

        python3.11 -m venv --without-pip /tmp/noextras
        for e in .venv/lib/python3.11/site-packages/*; do case $(basename $e) in
            facetool_extras*|__editable__.facetool_extras*) ;; *) ln -s $PWD/$e /tmp/noextras/lib/python3.11/site-packages/;;
        esac; done
        sed '1s|.*|#!/tmp/noextras/bin/python|' .venv/bin/facetool > /tmp/noextras/bin/facetool  # the CLI tests run
        chmod +x /tmp/noextras/bin/facetool
        PYTHONPATH=$PWD /tmp/noextras/bin/python -m pytest -n 0 tests/...

    The tests of the extras' own plugins (marked `extras`) are then skipped.
    """
    root = tmp_path_factory.mktemp("test-backbone")
    install_test_plugins(root)
    sys.path.insert(0, str(root))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *([old] if old else [])])
    plugins.clear_cache()
    yield root
    sys.path.remove(str(root))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old
    plugins.clear_cache()


EXTRAS = importlib.util.find_spec("facetool_extras") is not None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "extras: uses a facetool-extras plugin; skipped where it is not installed"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without facetool-extras the core suite still runs: the tests of the extras' losses are skipped."""
    if EXTRAS:
        return
    skip = pytest.mark.skip(reason="facetool-extras is not installed")
    for item in items:
        if "extras" in item.keywords:
            item.add_marker(skip)


def shared_dir() -> Path | None:
    """The folder named by FACETOOL_SHARED, or None when it is unset."""
    value = os.environ.get("FACETOOL_SHARED")
    return Path(value).resolve() if value else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder; tests that need it skip, with the reason, when FACETOOL_SHARED is unset."""
    path = shared_dir()
    if path is None:
        pytest.skip("FACETOOL_SHARED is not set: no LFW images or SSD detector to test with")
    if not (path / "lfw").is_dir():
        pytest.fail(f"FACETOOL_SHARED={path} has no lfw/ folder")
    return path


@pytest.fixture(scope="session")
def lfw_dir(shared: Path) -> Path:
    return shared / "lfw" / "lfw-deepfunneled"


@pytest.fixture(scope="session")
def ssd_dir(shared: Path) -> Path:
    return shared / "models" / "ssd-res10"


@pytest.fixture
def facetool_cli():
    """The `run_facetool` function, as a fixture."""
    return run_facetool
