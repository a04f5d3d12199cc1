"""Small face caches of LFW centre crops for the benchmarks, so they run without a detector pass first."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facetool.cache import CacheWriter, FaceRecord


def build_cache(
    lfw: Path, path: Path, *, min_images: int, max_identities: int, size: int, source: str = "benchmarks"
) -> Path:
    """Centre crops (the middle 150 px of the 250 px deep-funneled images) of people with >= min_images."""
    people = []
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jpg"))
        if len(files) >= min_images:
            people.append(files)
        if len(people) >= max_identities:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    with CacheWriter(path, image_size=size, encoding="jpeg", meta={"source": source}) as writer:
        for files in people:
            for file in files:
                image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
                face = cv2.resize(image[50:200, 50:200], (size, size), interpolation=cv2.INTER_AREA)
                stat = file.stat()
                writer.add(
                    FaceRecord(
                        path=f"{file.parent.name}/{file.name}",
                        identity=file.parent.name,
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
