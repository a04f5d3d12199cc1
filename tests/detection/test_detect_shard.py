"""`detect --shard i/n` on several machines, then `dataset merge`, gives the cache of one whole run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from detect_helpers import facetool_command, link_lfw_subset, run_cli

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


def test_rank_and_world_size_pick_the_shard_and_the_output(lfw_dir: Path, ssd_dir: Path, tmp_path: Path):
    """Two processes launched as torchrun would (RANK, WORLD_SIZE), at the same time, cover the folder once."""
    data = tmp_path / "data"
    images = link_lfw_subset(lfw_dir, data, "Ad", 8)
    out = tmp_path / "faces.h5"
    args = facetool_command("detect", data, "-o", out, "--model-dir", ssd_dir, "--no-progress", "-j", "1")
    procs = [
        subprocess.Popen(
            args, env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2"}, stderr=subprocess.PIPE
        )
        for rank in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    parts = [tmp_path / "faces.shard0-of-2.h5", tmp_path / "faces.shard1-of-2.h5"]
    assert not out.exists()
    shards = []
    for part in parts:
        with open_cache(part) as cache:
            shards.append(set(cache.paths))
            assert cache.meta["shard"] in ("0/2", "1/2")
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    merged = run_cli("dataset", "merge", *parts, "-o", out)
    assert merged.returncode == 0, merged.stderr
    with open_cache(out) as cache:
        assert len(cache) == images == len(shards[0] | shards[1])


def test_a_bad_rank_is_a_usage_error(tmp_path: Path):
    (tmp_path / "data" / "Someone").mkdir(parents=True)
    result = run_cli(
        "detect", tmp_path / "data", "-o", tmp_path / "x.h5", env={"RANK": "2", "WORLD_SIZE": "2"}
    )
    assert (
        result.returncode == 2 and "RANK=2 WORLD_SIZE=2" in result.stderr and "Traceback" not in result.stderr
    )
