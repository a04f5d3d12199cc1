"""benchmarks/report.py: the section every benchmark script appends (machine, command, table) and --report."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("benchmark_report", ROOT / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def test_appending_twice_keeps_the_first_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\nwritten by hand\n")
    report.append_section(
        path,
        "first run",
        ("what", "images/s"),
        [["preload", "6,241"]],
        script="loader.py",
        argv=["--runs", "5"],
    )
    report.append_section(
        path,
        "second run",
        ("what", "images/s"),
        [["gather", "55,144"]],
        script="loader.py",
        argv=["--rounds", "a b"],
    )
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nwritten by hand\n")
    first, second = text.index("\n### first run\n"), text.index("\n### second run\n")
    assert first < second
    assert "| preload | 6,241 |" in text[first:second] and "| gather | 55,144 |" in text[second:]
    lines = text[second:].splitlines()
    machine = lines[3]
    assert machine.endswith(": `python benchmarks/loader.py --rounds 'a b'`")
    assert " UTC, " in machine and platform.platform() in machine
    assert f"{os.cpu_count()} CPUs" in machine and "load average " in machine
    assert f"torch {torch.__version__}" in machine and "GPU" not in machine
    assert lines[5:] == ["| what | images/s |", "|---|---|", "| gather | 55,144 |"]
    assert text[first:second].count("`python benchmarks/loader.py --runs 5`") == 1


def test_a_note_sits_between_the_command_and_the_table(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    report.append_section(path, "t", ("a",), [[1]], script="x.py", argv=[], note="Seed 0.")
    lines = path.read_text().splitlines()
    assert lines[3].endswith("`python benchmarks/x.py`") and lines[4:] == [
        "",
        "Seed 0.",
        "",
        "| a |",
        "|---|",
        "| 1 |",
    ]


def test_cells_with_a_pipe_stay_one_cell() -> None:
    assert report.markdown_table(("a", "b"), [["x|y", 1]]).splitlines()[-1] == "| x\\|y | 1 |"


def test_report_option_defaults_to_the_docs_except_for_smoke_runs(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    report.add_report_options(parser)

    def target(*argv: str) -> Path | None:
        return report.report_file(parser.parse_args(argv))

    assert target() == ROOT / "docs" / "benchmarks.md"
    assert target("--smoke") is None
    assert target("--no-report") is None
    assert target("--smoke", "--report", str(tmp_path / "r.md")) == tmp_path / "r.md"
