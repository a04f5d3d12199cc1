"""The top-level Python API: every verb resolves to the library function its command calls, loaded lazily."""

from __future__ import annotations

import subprocess
import sys
from importlib import import_module

import pytest

import facetool


@pytest.mark.parametrize("name", sorted(facetool.API))
def test_each_verb_is_the_library_function_behind_its_command(name: str) -> None:
    module, _, attr = facetool.API[name].partition(":")
    assert getattr(facetool, name) is getattr(import_module(module), attr)
    assert name in facetool.__all__ and name in dir(facetool)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        facetool.trian  # noqa: B018


def test_import_facetool_loads_no_torch() -> None:
    code = "import sys, facetool; print('torch' in sys.modules, facetool.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split()[0] == "False"
