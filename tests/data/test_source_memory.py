"""Streaming keeps memory flat: the peak RSS of a short streamed training does not grow with the cache's faces.

Two caches of replicated LFW crops (40 images per identity), one five times the other, each trained on by a
real `facetool train` process (test-cnn at 64 px on 128 px crops, three steps); its peak RSS (`resource.getrusage` of its parent) may
differ by far less than the larger cache's decoded size. The same run preloaded at the crops' 128 px shows the
test can fail: with nothing to resize, a preloaded source decodes every face before its first round (at 64 px it
decodes and resizes only the faces its three steps draw, and stays as small as the streamed run).
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

SIZE = 128
INPUT = 64
PER_IDENTITY = 40
RUN = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "facetool", *sys.argv[1:]], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr[-3000:])
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def train_args(cache: Path, run_dir: Path, mode: str, size: int = INPUT) -> list[str]:
    """A short real `facetool train` of test-cnn at `size` px, reading faces as `mode` says."""
    return [
        "train", "--data", str(cache), "--checkpoint-dir", str(run_dir), "--num-epochs", "1",
        "--batch-size", "30", "--people-per-batch", "10", "--images-per-person", "10", "--device", "cpu",
        "--set", "backbone=test-cnn", "--set", f"image_size={size}", "--set", "embedding_dim=16",
        "--set", "epoch_size=3", "--set", "validation.fraction=0.0", "--threads", "1",
        "--set", f"data.preload={mode}", "--set", "data.workers=1",
    ]  # fmt: skip


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


def peak_rss(runs: list[tuple[Path, str, int]], folder: Path) -> list[int]:
    """Peak RSS of each (cache, mode, input size) training run (its largest process), all run at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, *train_args(cache, folder / f"run{i}", mode, size)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (cache, mode, size) in enumerate(runs)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1])["peak"])
    for i, (_, mode, _) in enumerate(runs):
        log = (folder / f"run{i}" / "train.log").read_text()
        assert ("faces: streaming" if mode == "stream" else "faces: preloading") in log
        assert "epoch 1/1:" in log
    return results


def test_streamed_training_peak_rss_does_not_grow_with_the_cache(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    small, large = caches
    decoded_large = 10_000 * SIZE * SIZE * 3
    streamed_small, streamed_large, preloaded_large, drawn_large = peak_rss(
        [
            (small, "stream", INPUT),
            (large, "stream", INPUT),
            (large, "preload", SIZE),
            (large, "preload", INPUT),
        ],
        tmp_path,
    )
    assert abs(streamed_large - streamed_small) < decoded_large / 4
    assert preloaded_large - streamed_large > decoded_large * 0.9
    # preloaded faces resized once are decoded on their first round: three steps hold what their rounds drew
    assert drawn_large - streamed_large < decoded_large / 4
