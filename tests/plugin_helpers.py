"""Throwaway plugin distributions for tests: a real `*.dist-info` (METADATA and entry_points.txt) beside the
module it points to, found through sys.path (in process) or PYTHONPATH (subprocess)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from facetool import plugins

Install = Callable[..., None]


def make_distribution(
    root: Path,
    name: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str],
    version: str = "1.0",
) -> None:
    """Write an installed distribution `name` (dist-info with entry points) and its modules under `root`."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {target}" for key, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@contextmanager
def plugin_site(root: Path) -> Iterator[Install]:
    """Install throwaway distributions under `root` for the block only (sys.path entry, discovery cache
    cleared on the way in and out, their modules unloaded after)."""
    root.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(root))
    before = set(sys.modules)

    def install(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
        make_distribution(root, name, entry_points, modules)
        plugins.clear_cache()

    try:
        yield install
    finally:
        sys.path.remove(str(root))
        for module in set(sys.modules) - before:
            if getattr(sys.modules[module], "__file__", "") and str(root) in sys.modules[module].__file__:
                del sys.modules[module]
        plugins.clear_cache()
