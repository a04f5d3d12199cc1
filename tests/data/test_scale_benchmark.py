"""benchmarks/scale.py --smoke generates a replicated cache, prints its table and appends it to the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "| faces | cache MB | open s | decoded GiB | train RSS MB stream | train RSS MB preload | "
    "first round s stream | first step s stream | img/s 1w | img/s 2w | img per worker CPU-s | parent CPU ms/1k img | embed RSS MB |"
)


def test_scale_smoke_prints_and_reports_each_size(shared: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    argv = ["benchmarks/scale.py", "--smoke", "--report", str(report), "--scratch", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"FACETOOL_SHARED": str(shared), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data path at scale:" in result.stdout
    assert list(tmp_path.iterdir()) == [report]  # the generated caches are gone

    lines = report.read_text().splitlines()
    assert lines[1].startswith("### data path at scale: ") and "rounds of 6 x 4" in lines[1]
    assert lines[3].endswith(f": `python {' '.join(argv)}`")
    assert lines[5] == HEADER
    rows = [[c.strip().replace(",", "") for c in line.strip("|").split("|")] for line in lines[7:]]
    assert [r[0] for r in rows] == ["600"]
    for cells in rows:
        faces, _mb, open_s, decoded, rss_stream, rss_pre, first_round, first = cells[:8]
        rate1, rate2, per_cpu, parent, embed = cells[8:]
        assert float(open_s) >= 0 and float(decoded) == round(int(faces) * 48 * 48 * 3 / (1 << 30), 2)
        assert float(rss_stream) > 0 and float(rss_pre) > 0 and float(embed) > 0
        assert 0 < float(first_round) <= float(first) < 60 and float(rate1) > 0 and float(rate2) > 0
        assert float(per_cpu) > 0 and float(parent) >= 0
