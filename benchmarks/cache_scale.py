"""How the face cache and `dataset stats|filter` scale: synthetic caches of N faces made of real LFW crops.

The first --source LFW images are centre-cropped to 160 px and written once through `CacheWriter`; a cache of
N faces then repeats their stored JPEG bytes under new identity names, 40 images each, written by the cache
package's own file writer (no re-encoding, so building 1M faces takes seconds, not hours). For each N the script
measures, each in a fresh subprocess: opening the cache and reading its labels (seconds, and the process's
peak RSS next to that of the bare `import facetool.cache`), `facetool dataset stats` and `facetool dataset filter --max-images 20` (wall
seconds, start-up included). The caches live in a temporary folder. Usage:

    FACETOOL_SHARED=../shared .venv/bin/python benchmarks/cache_scale.py [--sizes 13000 100000] [--million]
        [--source 400] [--crop 160] [--smoke] [--json] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from report import append_section, parse_args, rich_table
from rich.console import Console

from facetool.cache import CacheWriter, FaceRecord, open_cache
from facetool.cache.copy import Selection
from facetool.cache.records import FaceColumns, FailureColumns
from facetool.cache.store import write_file

PER_IDENTITY = 40
SIZE = 160

_OPEN = """
import sys, time
import facetool.cache as fc

def peak_mb():  # VmHWM: this process's own high-water mark (ru_maxrss can carry the parent's across exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

base = peak_mb()
start = time.perf_counter()
with fc.open_cache(sys.argv[1]) as cache:
    labels, names, size = cache.labels, cache.identities, cache.image_size
    assert len(labels) == int(sys.argv[2]) and len(names) > 0 and size > 0
seconds = time.perf_counter() - start
print(seconds, base, peak_mb())
"""


def source_cache(lfw: Path, path: Path, count: int, size: int = SIZE) -> Path:
    """`count` real LFW centre crops (the middle 160 px of the 250 px images, resized to `size`) in a cache."""
    files = sorted(lfw.glob("*/*.jpg"))[:count]
    with CacheWriter(path, image_size=size, meta={"source": "cache_scale"}) as writer:
        for file in files:
            image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
            st = file.stat()
            face = cv2.resize(image[45:205, 45:205], (size, size), interpolation=cv2.INTER_AREA)
            rel = f"{file.parent.name}/{file.name}"
            writer.add(
                FaceRecord(rel, file.parent.name, st.st_size, st.st_mtime_ns, face, None, float("nan"), False)
            )
    return path


def synthetic_cache(source: Path, path: Path, n: int) -> float:
    """A cache of `n` faces repeating the source's stored bytes, 40 per synthetic identity; returns seconds."""
    start = time.perf_counter()
    with open_cache(source) as src:
        rows = np.arange(n)
        person = rows // PER_IDENTITY
        names = [f"person_{k:07d}" for k in range(int(person[-1]) + 1)]
        faces = FaceColumns(
            names,
            person.astype(np.int64),
            np.full(n, 10_000, np.int64),
            np.zeros(n, np.int64),
            np.full((n, 4), np.nan, np.float32),
            np.full(n, np.nan, np.float32),
            np.zeros(n, bool),
            paths=[
                f"{names[p]}/{names[p]}_{r % PER_IDENTITY:04d}.jpg" for r, p in zip(rows, person, strict=True)
            ],
        )
        payloads = Selection([src], np.zeros(n, np.int64), rows % len(src))
        write_file(path, src.format, {"source": "cache_scale"}, 0, faces, FailureColumns(), payloads)
    return time.perf_counter() - start


def timed(args: Sequence[object]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed: {done.stderr}")
    return time.perf_counter() - start, done.stdout


def measure(source: Path, workdir: Path, n: int) -> dict[str, float | int]:
    path = workdir / f"faces-{n}.h5"
    build_s = synthetic_cache(source, path, n)
    _, out = timed([sys.executable, "-c", _OPEN, path, n])
    open_s, import_mb, rss_mb = (float(v) for v in out.split())
    stats_s, _ = timed([sys.executable, "-m", "facetool", "dataset", "stats", path, "--json"])
    filtered = workdir / f"filtered-{n}.h5"
    filter_s, _ = timed(
        [
            sys.executable,
            "-m",
            "facetool",
            "dataset",
            "filter",
            path,
            "-o",
            filtered,
            "--max-images",
            "20",
            "--json",
        ]
    )
    row = {"faces": n, "file_mb": path.stat().st_size / 1e6, "build_s": build_s, "open_s": open_s}
    row |= {"import_rss_mb": import_mb, "open_rss_mb": rss_mb, "stats_s": stats_s, "filter_s": filter_s}
    for p in (path, filtered):
        p.unlink()
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[13_000, 100_000])
    parser.add_argument("--million", action="store_true", help="also measure 1,000,000 faces")
    parser.add_argument("--source", type=int, default=400, help="real LFW crops to repeat")
    parser.add_argument("--crop", type=int, default=SIZE, help="crop side in pixels (smaller: smaller files)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no report: checks the script runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parse_args(parser, argv, smoke={"sizes": [400], "source": 40, "million": False})
    shared = os.environ.get("FACETOOL_SHARED")
    if not shared:
        raise SystemExit("set FACETOOL_SHARED to the shared data folder")
    sizes = [*args.sizes, *([1_000_000] if args.million else [])]
    with tempfile.TemporaryDirectory() as tmp:
        source = source_cache(
            Path(shared) / "lfw" / "lfw-deepfunneled", Path(tmp) / "source.h5", args.source, args.crop
        )
        rows = [measure(source, Path(tmp), n) for n in sizes]
    header = [
        "faces",
        "file MB",
        "build s",
        "open + labels s",
        "peak RSS MB (import alone)",
        "stats s",
        "filter s",
    ]
    cells = [
        [f"{r['faces']:,}", f"{r['file_mb']:,.0f}", f"{r['build_s']:.1f}", f"{r['open_s']:.2f}",
         f"{r['open_rss_mb']:.0f} ({r['import_rss_mb']:.0f})", f"{r['stats_s']:.1f}", f"{r['filter_s']:.1f}"]
        for r in rows
    ]  # fmt: skip
    title = (
        f"face cache scale: synthetic caches of {args.source} real LFW {args.crop} px crops repeated, "
        "40 per identity"
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        Console(width=120).print(rich_table(title, header, cells))
    if args.report is not None:
        append_section(args.report, title, header, cells, script=__file__, argv=args.argv)


if __name__ == "__main__":
    main()
