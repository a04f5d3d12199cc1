"""File size and read speed of the face cache's two encodings (JPEG bytes vs raw uint8) on real LFW crops.

Crops are a plain centre crop (160x160 of the 250x250 deep-funneled image) resized to --size with OpenCV, so
no detector is involved. For each encoding the script writes one cache, then measures a full preload
(`read_faces()`, what training does), random single-face reads and random batches of 256 faces; each read
figure is the median of --repeats runs after one warm-up. Reads run on a warm page cache (the file was just
written). Prints the table and appends it with machine and command to --report (docs/benchmarks.md by
default). Usage:

    FACETOOL_SHARED=../shared .venv/bin/python benchmarks/cache_encoding.py [--images 13233] [--size 160]
        [--repeats 3] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console
from timing import call_times

from facetool.cache import CacheWriter, FaceRecord, open_cache


def centre_crops(root: Path, count: int, size: int) -> tuple[list[Path], np.ndarray]:
    files = sorted(root.glob("*/*.jpg"))[:count]
    faces = np.empty((len(files), size, size, 3), np.uint8)
    for i, path in enumerate(files):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        top, left = (h - 160) // 2, (w - 160) // 2
        crop = cv2.resize(img[top : top + 160, left : left + 160], (size, size), interpolation=cv2.INTER_AREA)
        faces[i] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return files, faces


def median_of(repeats: int, fn: Callable[[], object]) -> float:
    """Median seconds of `repeats` calls after a warm-up."""
    return statistics.median(call_times(fn, repeats, torch.device("cpu")))


def measure(
    encoding: str, root: Path, files: list[Path], faces: np.ndarray, workdir: Path, repeats: int
) -> dict:
    path = workdir / f"{encoding}.h5"
    size = faces.shape[1]
    start = time.perf_counter()
    with CacheWriter(path, image_size=size, encoding=encoding) as writer:
        for i, (file, face) in enumerate(zip(files, faces, strict=True)):
            st = file.stat()
            writer.add(FaceRecord(file.relative_to(root).as_posix(), file.parent.name, st.st_size,
                                  st.st_mtime_ns, face, None, float("nan"), False))  # fmt: skip
            if i % 256 == 255:
                writer.commit()
    write_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    n = len(files)
    open_s = median_of(repeats, lambda: open_cache(path).close())
    with open_cache(path) as cache:
        preload_s = median_of(repeats, cache.read_faces)
        loaded = cache.read_faces()
        singles = rng.integers(0, n, 500)
        single_s = median_of(repeats, lambda: [cache.read_faces([i]) for i in singles])
        batches = [rng.choice(n, 256, replace=False) for _ in range(10)]
        batch_s = median_of(repeats, lambda: [cache.read_faces(b) for b in batches])
        order = np.argsort(cache.paths)
        reference = faces[np.argsort(np.argsort([f.relative_to(root).as_posix() for f in files]))]
        error = float(np.abs(loaded.astype(np.int16) - reference[order].astype(np.int16)).mean())
    return {
        "encoding": encoding,
        "images": n,
        "file_mb": path.stat().st_size / 1e6,
        "kb_per_image": path.stat().st_size / n / 1e3,
        "write_img_s": n / write_s,
        "preload_img_s": n / preload_s,
        "preload_s": preload_s,
        "open_s": open_s,
        "random_single_img_s": len(singles) / single_s,
        "random_batch256_img_s": 256 * len(batches) / batch_s,
        "mean_abs_error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=13233)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_report_options(parser)
    args = parser.parse_args()
    shared = os.environ.get("FACETOOL_SHARED")
    if not shared:
        raise SystemExit("set FACETOOL_SHARED to the shared data folder")
    root = Path(shared) / "lfw" / "lfw-deepfunneled"
    files, faces = centre_crops(root, args.images, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(enc, root, files, faces, Path(tmp), args.repeats) for enc in ("jpeg", "raw")]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    columns = [
        ("encoding", "encoding", "{}"),
        ("file MB", "file_mb", "{:.1f}"),
        ("KB/image", "kb_per_image", "{:.1f}"),
        ("write img/s", "write_img_s", "{:,.0f}"),
        ("open s", "open_s", "{:.3f}"),
        ("preload img/s", "preload_img_s", "{:,.0f}"),
        ("1 random img/s", "random_single_img_s", "{:,.0f}"),
        ("256 random img/s", "random_batch256_img_s", "{:,.0f}"),
        ("abs err", "mean_abs_error", "{:.2f}"),
    ]
    title = f"face cache encodings: {len(files):,} LFW centre crops, {args.size} px, median of {args.repeats}"
    header = [name for name, _, _ in columns]
    cells = [[fmt.format(row[key]) for _, key, fmt in columns] for row in rows]
    if args.json:
        print(json.dumps({"machine": machine, "size": args.size, "results": rows}, indent=2))
    else:
        table = rich_table(title, header, cells, caption=machine)
        Console(width=max(120, Console().width)).print(table)
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, cells, script=__file__)


if __name__ == "__main__":
    main()
