"""Detection throughput on LFW: images/s of `detect_directory` per model format and worker count.

    FACETOOL_SHARED=../shared .venv/bin/python benchmarks/detect_throughput.py --images 400 --workers 1 2
        [--runs 1] [--report FILE | --no-report]

Each cell is the median of --runs fresh runs, each into a new cache (start-up included in "images/s";
"steady" leaves out the time until the first batch came back). The first column is the median of one SSD
forward on one core, for scale. Prints the table and appends it with machine and command to --report
(docs/benchmarks.md by default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console

from facetool.config.detect import DetectConfig
from facetool.detection.images import read_image
from facetool.detection.model_files import resolve_model_files
from facetool.detection.runner import DetectProgress, detect_directory, usable_cores
from facetool.detection.ssd import SsdNet


def link_images(lfw: Path, target: Path, count: int) -> int:
    """Symlink the first `count` images (sorted by identity) into `target`/<identity>/."""
    linked = 0
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        for image in sorted(folder.glob("*.jpg")):
            if linked >= count:
                return linked
            (target / folder.name).mkdir(parents=True, exist_ok=True)
            (target / folder.name / image.name).symlink_to(image)
            linked += 1
    return linked


def forward_ms(files, image: Path, repeats: int = 20) -> float:
    """Median milliseconds of one detector call (blob + forward) on one OpenCV thread."""
    cv2.setNumThreads(1)
    detector = SsdNet(files)
    rgb = read_image(image, 10**8)
    detector.detect(rgb)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(rgb)
        times.append(time.perf_counter() - start)
    cv2.setNumThreads(-1)
    return 1000 * sorted(times)[len(times) // 2]


def timed_run(data: Path, cache: Path, config: DetectConfig) -> tuple[float, float, int]:
    """(images/s overall, images/s after the first batch, faces found) of one fresh run."""
    marks: list[tuple[float, int]] = []

    def on_progress(update: DetectProgress) -> None:
        marks.append((time.monotonic(), update.done))

    summary = detect_directory(data, cache, config, progress=on_progress)
    done = [(t, n) for t, n in marks if n > 0]
    steady = (done[-1][1] - done[0][1]) / (done[-1][0] - done[0][0]) if len(done) > 1 else 0.0
    return summary.images_per_second, steady, summary.faces


def main() -> None:
    shared = Path(os.environ.get("FACETOOL_SHARED", "../shared"))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=shared / "lfw" / "lfw-deepfunneled")
    parser.add_argument("--models", type=Path, default=shared / "models" / "ssd-res10")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--formats", nargs="+", default=["tensorflow", "caffe"])
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, usable_cores()}))
    parser.add_argument("--runs", type=int, default=1, help="fresh runs per cell (the median is shown)")
    add_report_options(parser)
    args = parser.parse_args()

    title = f"facetool detect throughput ({usable_cores()} usable cores), median of {args.runs} runs"
    header = ("format", "workers", "images", "1 forward (ms)", "images/s", "steady images/s", "faces")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        count = link_images(args.lfw, data, args.images)
        first = next(data.glob("*/*.jpg"))
        for fmt in args.formats:
            files = resolve_model_files(fmt, args.models)
            ms = forward_ms(files, first)
            for workers in args.workers:
                config = DetectConfig(model_format=fmt, model_dir=args.models, workers=workers)
                runs = [
                    timed_run(data, Path(tmp) / f"{fmt}-{workers}-{i}.h5", config) for i in range(args.runs)
                ]
                rate = statistics.median([r[0] for r in runs])
                steady = statistics.median([r[1] for r in runs])
                rows.append([fmt, workers, count, f"{ms:.1f}", f"{rate:.1f}", f"{steady:.1f}", runs[-1][2]])
    Console().print(rich_table(title, header, rows))
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, rows, script=__file__)


if __name__ == "__main__":
    main()
