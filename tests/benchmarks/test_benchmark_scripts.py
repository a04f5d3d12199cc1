"""The GPU benchmark and the prepared GPU check run end to end on the CPU with their --smoke settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_runs_benchmark_and_real_epochs(shared, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"FACETOOL_SHARED": str(shared), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train step engines" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("└")
    last_table = result.stdout[result.stdout.rindex("one real epoch") :]
    assert "│ none " in last_table and "│ cuda-graph " in last_table
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| none | none | 30 |" in report and "| cuda-graph | none | 30 |" in report
    assert (tmp_path / "run-cuda-graph" / "last.pth").is_file()
