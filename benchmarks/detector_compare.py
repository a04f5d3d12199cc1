"""SSD vs MTCNN on the same LFW photos: detection images/s side by side, and where they disagree.

    FACETOOL_SHARED=../shared .venv/bin/python benchmarks/detector_compare.py --images 200 [--threads 1]

Takes the first --images photos of LFW (identities in sorted order), decodes them once, then times each detector
alone on them in this process with --threads OpenCV/torch threads (`ssd` one image at a time, `mtcnn` in batches
of --batch images, as `facetool detect` feeds a worker). Counts the photos where a detector finds at least one
face with its default settings (detect.threshold 0.5): found by both, by one only, by neither; and the photos
where they find a different number of faces (a second face in the background). Prints the table
with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import torch

from facetool.config.detect import DetectConfig
from facetool.detection import create_detector, read_image


def lfw_images(count: int) -> list[Path]:
    root = Path(os.environ["FACETOOL_SHARED"]) / "lfw" / "lfw-deepfunneled"
    found: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        found += sorted(folder.glob("*.jpg"))
        if len(found) >= count:
            break
    return found[:count]


def timed(name: str, images: list, batch: int) -> tuple[float, list[int]]:
    """(images/s, faces found in each image) of detector `name` after one warm-up call."""
    detector = create_detector(DetectConfig(detector=name))
    detector.detect(images[0])
    start = time.perf_counter()
    found: list[int] = []
    for i in range(0, len(images), batch):
        found += [len(d) for d in detector.detect_batch(images[i : i + batch])]
    return len(images) / (time.perf_counter() - start), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    paths = lfw_images(args.images)
    images = [read_image(p, 10**8) for p in paths]
    load_before = os.getloadavg()
    ssd_rate, ssd_found = timed("ssd", images, 1)
    mtcnn_rate, mtcnn_found = timed("mtcnn", images, args.batch)
    load_after = os.getloadavg()
    both = sum(bool(a and b) for a, b in zip(ssd_found, mtcnn_found, strict=True))
    counts_differ = sum(a != b for a, b in zip(ssd_found, mtcnn_found, strict=True))
    only_ssd = [p for p, a, b in zip(paths, ssd_found, mtcnn_found, strict=True) if a and not b]
    only_mtcnn = [p for p, a, b in zip(paths, ssd_found, mtcnn_found, strict=True) if b and not a]
    neither = len(paths) - both - len(only_ssd) - len(only_mtcnn)
    print(f"{len(paths)} LFW photos (250 x 250), {args.threads} thread(s), {os.cpu_count()} cores")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print("| detector | images/s | photos with a face | faces |")
    print("|---|---|---|---|")
    print(f"| ssd (one image per call) | {ssd_rate:.1f} | {sum(map(bool, ssd_found))} | {sum(ssd_found)} |")
    row = f"| mtcnn (batches of {args.batch}) | {mtcnn_rate:.1f} | {sum(map(bool, mtcnn_found))} | {sum(mtcnn_found)} |"
    print(row)
    print(
        f"photos with a face: both {both}, ssd only {len(only_ssd)}, mtcnn only {len(only_mtcnn)}, neither {neither}"
    )
    print(f"photos where the two find a different number of faces: {counts_differ}")
    for label, group in (("ssd only", only_ssd), ("mtcnn only", only_mtcnn)):
        for path in group:
            print(f"  {label}: {path.parent.name}/{path.name}")


if __name__ == "__main__":
    main()
