"""The package's layout rules, read from the source: imports point down the pipeline, never up, never in a circle,
and no module grows past the size where it holds more than one job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facetool"

# Rank of each room in the pipeline; a module may import only rooms of a lower rank, or its own room.
LAYERS: dict[str, int] = {
    "cli": 90,
    "__main__": 95,
    "recognition": 85,
    "protocol": 80,
    "demo": 80,
    "verification": 80,
    "training": 70,
    "curation": 70,
    "evaluation": 60,
    "embedding": 50,
    "inference": 45,
    "detection": 40,
    "formats": 35,
    "data": 40,
    "cache": 30,
    "models": 30,
    "miners": 30,
    "losses": 30,
    "plugins": 20,
    "device": 20,
    "config": 15,
    "files": 10,
    "identities": 10,
    "errors": 5,
    "__init__": 0,
}
# Pairs the ranks allow but the data flow does not: the trainer takes a cache (it never detects), and evaluation
# embeds through the shared embedding function, not through the export side of `facetool.embedding`.
FORBIDDEN = {("training", "detection"), ("evaluation", "embedding")}
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every facetool module `module` imports, at the top or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("facetool") and name != module:
                targets.add(name)
    return targets


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_every_room_has_a_rank(graph: dict[str, set[str]]) -> None:
    assert {_room(m) for m in graph} <= set(LAYERS), "add the new room to LAYERS"


def test_imports_point_down_the_pipeline(graph: dict[str, set[str]]) -> None:
    upward = []
    for module, targets in graph.items():
        room = _room(module)
        for target in targets:
            other = _room(target)
            if other == room or other == "__init__":
                continue
            if LAYERS[other] >= LAYERS[room] or (room, other) in FORBIDDEN:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.endswith(".__init__") or nxt == "facetool":
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_holds_several_jobs() -> None:
    too_long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}
