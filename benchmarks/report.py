"""The record every benchmark script leaves: a markdown section with machine, command and its table.

`append_section` appends a `###` title, one line naming the date, the machine and the exact command, and the
table the script printed, to a markdown file (docs/benchmarks.md unless `--report` says otherwise), so a
figure in the docs can always be traced to what produced it and where.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.table import Table

DEFAULT_REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """The standard `--report FILE` and `--no-report` options; resolve them with `report_file`."""
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help=f"markdown file to append the results to (default: {DEFAULT_REPORT.name} of the repository; "
        "none for --smoke runs)",
    )
    parser.add_argument("--no-report", action="store_true", help="only print the table")


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, smoke: dict[str, object] | None = None
) -> argparse.Namespace:
    """Parse with the report options added: `args.argv` keeps the arguments, `args.report` the file to append
    to, and a `--smoke` run takes the `smoke` settings."""
    add_report_options(parser)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.report = report_file(args)
    if getattr(args, "smoke", False):
        for key, value in (smoke or {}).items():
            setattr(args, key, value)
    return args


def report_file(args: argparse.Namespace) -> Path | None:
    """Where to append: --report if given, nothing for --no-report or a --smoke run, else docs/benchmarks.md."""
    if args.no_report:
        return None
    if args.report is not None:
        return args.report
    return None if getattr(args, "smoke", False) else DEFAULT_REPORT


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows, else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine(device: torch.device | None = None) -> str:
    """Platform, CPU model, CPU count, load average, torch version and, for a CUDA device, the GPU's name."""
    parts = [platform.platform()]
    if model := cpu_model():
        parts.append(model)
    parts.append(f"{os.cpu_count()} CPUs")
    if hasattr(os, "getloadavg"):
        parts.append("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    parts.append(f"torch {torch.__version__}")
    if device is not None and device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    return ", ".join(parts)


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """`python benchmarks/<script> ARGS`: the command that reproduces a run (argv defaults to sys.argv[1:])."""
    args = sys.argv[1:] if argv is None else list(argv)
    return "python " + shlex.join([f"benchmarks/{Path(script).name}", *args])


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; `|` inside a cell is escaped."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    left: int = 1,
    caption: str | None = None,
) -> Table:
    """The printed form of the same rows: the first `left` columns left-aligned, numbers right-aligned."""
    table = Table(title=title, caption=caption)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*map(str, row))
    return table


def append_section(
    path: Path | str,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    script: str,
    argv: Sequence[str] | None = None,
    device: torch.device | None = None,
    note: str | None = None,
) -> str:
    """Append `### title`, the date/machine/command line, `note` if any and the table to `path`; returns the text."""
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    text = f"\n### {title}\n\n{stamp}, {machine(device)}: `{command(script, argv)}`\n\n"
    if note:
        text += f"{note}\n\n"
    text += f"{markdown_table(header, rows)}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return text
