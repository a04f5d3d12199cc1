"""Each face's five landmarks through the cache: journal, consolidated file, filter and merge copies."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from cache_helpers import lfw_files, make_items

from facetool.cache import CacheWriter, FaceRecord, open_cache
from facetool.curation import merge_caches


def _with_landmarks(items: list, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, FaceRecord) and item.detected and i % 2:
            item = dataclasses.replace(item, landmarks=rng.uniform(40, 200, (5, 2)).astype(np.float32))
        out.append(item)
    return out


def test_landmarks_survive_the_journal_consolidation_and_a_merge(lfw_dir: Path, tmp_path: Path):
    items = _with_landmarks(make_items(lfw_dir, lfw_files(lfw_dir, ["Aaron_Peirsol", "Abel_Pacheco"]), 64), 1)
    expected = {it.path: it.landmarks for it in items}
    path = tmp_path / "a.h5"
    with CacheWriter(path, image_size=64) as writer:
        for item in items:
            writer.add(item)
        writer.commit()
        with open_cache(path) as cache:  # from the journal, before consolidation
            assert cache.journal_segments
            seen = dict(zip(cache.paths, cache.landmarks, strict=True))
    for source in (path, None):
        if source is None:
            merge_caches([path], tmp_path / "merged.h5")
            source = tmp_path / "merged.h5"
        with open_cache(source) as cache:
            assert not cache.journal_segments
            seen_now = dict(zip(cache.paths, cache.landmarks, strict=True))
            assert seen_now.keys() == seen.keys() == expected.keys()
            for p, marks in expected.items():
                if marks is None:
                    assert np.isnan(seen[p]).all() and np.isnan(seen_now[p]).all()
                else:
                    assert np.array_equal(seen[p], marks) and np.array_equal(seen_now[p], marks), p
            with_marks = [i for i, p in enumerate(cache.paths) if expected[p] is not None]
            assert with_marks and np.array_equal(
                cache.record(with_marks[0]).landmarks, expected[cache.paths[with_marks[0]]]
            )
