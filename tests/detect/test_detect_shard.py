"""`detect --shard i/n` on several machines, then `dataset merge`, gives the cache of one whole run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from detect_helpers import link_lfw_subset, run_cli

from facetool.cache import open_cache


def test_shards_are_disjoint_and_merge_into_the_whole_run(lfw_dir: Path, ssd_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    images = link_lfw_subset(lfw_dir, data, "Ab", 20)
    models = ["--model-dir", ssd_dir, "--no-progress", "-j", "1"]
    whole = run_cli("detect", data, "-o", tmp_path / "whole.h5", *models)
    assert whole.returncode == 0, whole.stderr
    parts = []
    for index in range(3):
        part = tmp_path / f"shard{index}.h5"
        result = run_cli("detect", data, "-o", part, "--shard", f"{index}/3", *models)
        assert result.returncode == 0, result.stderr
        parts.append(part)
    merged = run_cli("dataset", "merge", *parts, "-o", tmp_path / "merged.h5")
    assert merged.returncode == 0, merged.stderr

    identities = []
    for part in parts:
        with open_cache(part) as cache:
            identities.append(set(cache.identities))
            assert cache.meta["shard"].endswith("/3")
    assert all(identities) and sum(map(len, identities)) == len(set().union(*identities))
    with open_cache(tmp_path / "whole.h5") as a, open_cache(tmp_path / "merged.h5") as b:
        assert len(a) == images and a.paths == b.paths and a.identities == b.identities
        assert np.array_equal(a.labels, b.labels) and np.allclose(a.boxes, b.boxes)
        assert np.array_equal(a.read_faces(), b.read_faces())


def test_a_shard_outside_its_count_is_a_usage_error(tmp_path: Path):
    (tmp_path / "data" / "Someone").mkdir(parents=True)
    result = run_cli("detect", tmp_path / "data", "-o", tmp_path / "x.h5", "--shard", "3/3")
    assert result.returncode == 2
    assert "shard" in result.stderr and "Traceback" not in result.stderr
