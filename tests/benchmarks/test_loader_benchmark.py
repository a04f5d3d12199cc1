"""benchmarks/loader.py --smoke builds a small LFW cache, prints its table and appends it to the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("preload", "resize once", "gather", "gather + augment", "gather + to_input", "resized + augment")


def test_loader_smoke_prints_and_reports_every_variant(shared: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    argv = ["benchmarks/loader.py", "--smoke", "--report", str(report)]
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"FACETOOL_SHARED": str(shared), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")]
    assert printed == list(VARIANTS)
    assert "data loading:" in result.stdout

    lines = report.read_text().splitlines()
    assert lines[1].startswith("### data loading: ") and "rounds of 6 x 4" in lines[1]
    assert lines[3].endswith(f": `python {' '.join(argv)}`")
    assert lines[5] == "| variant | images/run | median ms | min ms | max ms | images/s | ms/round |"
    rows = [line.strip("|").split("|") for line in lines[7:]]
    assert [cells[0].strip() for cells in rows] == list(VARIANTS)
    for cells in rows:
        images, median, low, high, per_s = (float(c.replace(",", "")) for c in cells[1:6])
        assert images > 0 and 0 <= low <= median <= high and per_s > 0
