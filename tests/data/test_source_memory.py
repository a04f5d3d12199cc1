"""Streaming keeps memory flat: the peak RSS of a short streamed run does not grow with the cache's faces.

Two caches of replicated LFW crops (40 images per identity), one five times the other, each read by a fresh
process that runs a few streamed rounds; its peak RSS (`resource.getrusage`, plus its worker's VmHWM) may
differ by far less than the larger cache's decoded size. The same run preloaded shows the test can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetool.cache import CacheWriter, FaceRecord

SIZE = 64
PER_IDENTITY = 40
RUN = """
import json, resource, sys
import numpy as np
from facetool.data.choose import open_face_source
from facetool.data.sampling import PeopleSampler
source, choice = open_face_source(sys.argv[1], mode=sys.argv[2], workers=1)
sampler = PeopleSampler(source.labels, 10, 10)
rng = np.random.default_rng(0)
rows = sampler.sample(rng)
source.prefetch(rows)
for _ in range(4):
    following = sampler.sample(rng)
    source.prefetch(following)
    assert source.fetch(rows, "cpu").shape[0] == len(rows)
    rows = following
workers = source.pool.worker_peak_bytes() if choice.kind == "stream" else 0
source.close()
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"self": own, "peak": own + workers, "kind": choice.kind}))
"""


def replicated(path: Path, crops: list[np.ndarray], faces: int) -> Path:
    """`faces` faces: crop i mod len(crops), under identity Replica_{i // 40}."""
    with CacheWriter(path, image_size=SIZE, encoding="jpeg") as writer:
        for i in range(faces):
            name = f"Replica_{i // PER_IDENTITY:05d}"
            writer.add(FaceRecord(f"{name}/{i % PER_IDENTITY:02d}.jpg", name, 0, 0, crops[i % len(crops)],
                                  None, float("nan"), False))  # fmt: skip
            if i % 2000 == 1999:
                writer.commit()
    return path


@pytest.fixture(scope="module")
def caches(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("memory")
    crops = []
    for file in sorted(lfw_dir.glob("A*/*.jpg"))[:200]:
        image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
        crops.append(np.ascontiguousarray(cv2.resize(image[50:200, 50:200], (SIZE, SIZE))))
    return replicated(folder / "small.h5", crops, 2_000), replicated(folder / "large.h5", crops, 10_000)


def peak_rss(runs: list[tuple[Path, str]]) -> list[dict]:
    """Each (cache, mode) run in its own fresh process, all at once; what each reports."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, str(cache), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cache, mode in runs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_streamed_peak_rss_does_not_grow_with_the_cache(caches: tuple[Path, Path]) -> None:
    small, large = caches
    decoded_large = 10_000 * SIZE * SIZE * 3
    streamed_small, streamed_large, preloaded_large = peak_rss(
        [(small, "stream"), (large, "stream"), (large, "preload")]
    )
    assert streamed_small["kind"] == streamed_large["kind"] == "stream"
    assert abs(streamed_large["peak"] - streamed_small["peak"]) < decoded_large / 4
    assert preloaded_large["kind"] == "preload-host"
    assert preloaded_large["self"] - streamed_large["self"] > decoded_large * 0.9
