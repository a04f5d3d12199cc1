"""benchmarks/mining.py runs, prints and reports every registered miner (tiny sizes, so it stays a smoke test)."""

import os
import subprocess
import sys
from pathlib import Path

from facetool.miners import available_miners

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mining.py"


def test_benchmark_prints_and_reports_a_row_per_miner(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--people",
            "4",
            "--images",
            "3",
            "--dim",
            "8",
            "--runs",
            "1",
            "--threads",
            "1",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr
    first_cells = [line.split("│")[1].strip() for line in done.stdout.splitlines() if line.startswith("│")]
    for name in available_miners():
        assert first_cells.count(name) == 2, name  # one row per kind of embeddings
    assert "12 embeddings (4 x 3, D=8" in done.stdout
    text = report.read_text()
    assert text.startswith("\n### mining 12 embeddings (4 x 3, D=8")
    assert (
        f"`python benchmarks/mining.py --people 4 --images 3 --dim 8 --runs 1 --threads 1 --report {report}`"
        in text
    )
    reported = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert reported[1:] == first_cells
