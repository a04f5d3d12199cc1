"""A small real face cache for training tests: LFW images, centre-cropped and resized with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetool.cache import CacheWriter, FaceRecord

SIZE = 96


def build_lfw_cache(
    lfw_dir: Path, path: Path, *, identities: int = 10, per_identity: int = 6, singles: int = 1
) -> Path:
    """Write a cache of `identities` LFW people with >= 4 images (plus `singles` one-image people)."""
    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())
    counts = {name: len(list((lfw_dir / name).glob("*.jpg"))) for name in names[:400]}
    many = [n for n in names[:400] if counts[n] >= 4][:identities]
    one = [n for n in names[:400] if counts[n] == 1][:singles]
    with CacheWriter(path, image_size=SIZE, encoding="jpeg", meta={"source": "tests"}) as writer:
        for name in many + one:
            for file in sorted((lfw_dir / name).glob("*.jpg"))[:per_identity]:
                image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
                face = cv2.resize(image[50:200, 50:200], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                stat = file.stat()
                writer.add(
                    FaceRecord(
                        path=f"{name}/{file.name}",
                        identity=name,
                        size=stat.st_size,
                        mtime_ns=stat.st_mtime_ns,
                        face=np.ascontiguousarray(face),
                        box=None,
                        score=float("nan"),
                        detected=False,
                    )
                )
        writer.commit()
    return path


@pytest.fixture(scope="session")
def small_cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lfw_cache(lfw_dir, tmp_path_factory.mktemp("cache") / "faces.h5")
