"""benchmarks/cache_scale.py --smoke builds a synthetic cache of real LFW crops and measures it end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from facetool.cache import open_cache

ROOT = Path(__file__).resolve().parents[1]


def test_cache_scale_smoke_measures_a_real_synthetic_cache(shared: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from cache_scale import PER_IDENTITY, source_cache, synthetic_cache
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    lfw = shared / "lfw" / "lfw-deepfunneled"
    source = source_cache(lfw, tmp_path / "source.h5", 10)
    synthetic_cache(source, tmp_path / "big.h5", 95)
    with open_cache(source) as src, open_cache(tmp_path / "big.h5") as big:
        assert len(big) == 95 and len(big.identities) == -(-95 // PER_IDENTITY)
        assert big.paths[0] == "person_0000000/person_0000000_0000.jpg"
        rows = [0, 41, 94, 13]
        expected = src.read_faces([r % len(src) for r in rows])
        assert (big.read_faces(rows) == expected).all()

    result = subprocess.run(
        [sys.executable, "benchmarks/cache_scale.py", "--smoke", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"FACETOOL_SHARED": str(shared), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(result.stdout)
    assert row["faces"] == 400 and row["open_s"] > 0 and row["stats_s"] > 0 and row["filter_s"] > 0
