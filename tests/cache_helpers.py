"""Real face records for cache tests: plain centre crops of LFW images (no detector involved)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from facetool.cache import CacheWriter, FaceRecord, Failure


def centre_crop(path: Path, size: int) -> np.ndarray:
    """The central 160x160 of a 250x250 LFW image, resized to `size`, RGB uint8."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    top, left = (h - 160) // 2, (w - 160) // 2
    crop = cv2.resize(img[top : top + 160, left : left + 160], (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def lfw_files(root: Path, identities: list[str]) -> list[Path]:
    return [p for name in identities for p in sorted((root / name).glob("*.jpg"))]


def make_items(root: Path, files: list[Path], size: int, fail_every: int = 0) -> list[FaceRecord | Failure]:
    """One record per file; every `fail_every`-th file becomes a Failure, every third a fallback crop."""
    items: list[FaceRecord | Failure] = []
    for i, p in enumerate(files):
        st = p.stat()
        rel = p.relative_to(root).as_posix()
        if fail_every and i % fail_every == fail_every - 1:
            items.append(Failure(rel, p.parent.name, st.st_size, st.st_mtime_ns, "no face found"))
            continue
        detected = i % 3 != 0
        box = (45.0 + i, 45.0, 205.0, 205.0 + i / 2) if detected else None
        score = 0.5 + (i % 50) / 100 if detected else math.nan
        items.append(FaceRecord(rel, p.parent.name, st.st_size, st.st_mtime_ns, centre_crop(p, size), box,
                                score, detected))  # fmt: skip
    return items


def write_cache(path: Path, items: list[FaceRecord | Failure], size: int, batch: int = 16, **kwargs) -> None:
    """Write `items` to a new cache, committing every `batch` items."""
    with CacheWriter(path, image_size=size, **kwargs) as writer:
        for i, item in enumerate(items):
            writer.add(item)
            if i % batch == batch - 1:
                writer.commit()


def some_identities(root: Path, count: int, min_images: int = 1, start: int = 0) -> list[str]:
    """`count` identity folders (sorted) with at least `min_images` images, from position `start`."""
    names = []
    for d in sorted(root.iterdir())[start:]:
        if d.is_dir() and len(list(d.glob("*.jpg"))) >= min_images:
            names.append(d.name)
            if len(names) == count:
                break
    return names


def write_people_cache(root: Path, path: Path, people: list[str], per_identity: int, size: int) -> Path:
    """A cache of the first `per_identity` images of each of `people`: pixels 50-200 of the LFW image, resized."""
    with CacheWriter(path, image_size=size, encoding="jpeg", meta={"source": "tests"}) as writer:
        for name in people:
            for file in sorted((root / name).glob("*.jpg"))[:per_identity]:
                image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
                face = cv2.resize(image[50:200, 50:200], (size, size), interpolation=cv2.INTER_AREA)
                stat = file.stat()
                record = FaceRecord(f"{name}/{file.name}", name, stat.st_size, stat.st_mtime_ns,
                                    np.ascontiguousarray(face), None, math.nan, False)  # fmt: skip
                writer.add(record)
        writer.commit()
    return path
