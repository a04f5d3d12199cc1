"""How long `facetool eval` takes for the full LFW View 2 protocol (6,000 pairs, 7,701 images) on this machine.

With a face cache holding every image of pairs.txt (`--cache`, default /work/lfw-faces.h5) the whole
evaluation is timed once, as `evaluate_on_pairs` runs it. Without one, the phases are timed on a subset
and extrapolated: reading faces (median of --runs) and the InceptionResnetV1 forward pass (once) on
`--images` faces (LFW centre crops when there is no cache), and the metrics on all 6,000 pairs (median of
--runs). The network is untrained: its speed is that of any InceptionResnetV1 of the same size. Prints the
result as JSON and appends it as a table with machine and command to --report (docs/benchmarks.md by default).

    FACETOOL_SHARED=/work/shared .venv/bin/python benchmarks/eval_time.py [--cache FILE] [--images 256]
        [--runs 3] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from report import add_report_options, append_section, report_file
from timing import call_times

from facetool.cache import open_cache
from facetool.data.transforms import embed_faces
from facetool.evaluation.metrics import evaluate_folds, pair_distances
from facetool.evaluation.pairs import read_pairs
from facetool.evaluation.run import evaluate_on_pairs
from facetool.models import build_backbone

LIMIT_S = 360.0


def centre_crops(lfw_dir: Path, paths: list[str]) -> np.ndarray:
    faces = []
    for rel in paths:
        bgr = cv2.imread(str(lfw_dir / rel), cv2.IMREAD_COLOR)
        faces.append(cv2.cvtColor(cv2.resize(bgr[45:205, 45:205], (160, 160)), cv2.COLOR_BGR2RGB))
    return np.stack(faces)


def full_run(model: torch.nn.Module, cache_path: Path, pairs_path: Path, batch_size: int) -> dict:
    started = time.perf_counter()
    with open_cache(cache_path) as cache:
        report = evaluate_on_pairs(model, cache, pairs_path, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {
        "mode": "measured",
        "pairs": report.num_pairs,
        "images": report.num_images,
        "seconds": round(seconds, 1),
        "accuracy": report.accuracy,
    }


def cached_faces(cache_path: Path, paths: list[str]) -> np.ndarray:
    """The faces of `paths` that the cache holds, opening it as a fresh process would."""
    with open_cache(cache_path) as cache:
        row = {p: i for i, p in enumerate(cache.paths)}
        return cache.read_faces(np.array([row[p] for p in paths if p in row]))


def median_s(fn: Callable[[], object], runs: int) -> float:
    """Median seconds of `runs` calls after a warm-up."""
    return statistics.median(call_times(fn, runs, torch.device("cpu")))


def extrapolated(
    model, cache_path: Path | None, pairs_path: Path, lfw_dir: Path, n: int, batch_size: int, runs: int
) -> dict:
    pairs = read_pairs(pairs_path)
    images = pairs.images
    subset = images[:n]
    if cache_path is not None and cache_path.is_file():
        load = functools.partial(cached_faces, cache_path, subset)
        source = f"cache {cache_path}"
    else:
        load = functools.partial(centre_crops, lfw_dir, subset)
        source = "LFW centre crops (no cache)"
    read_s = median_s(load, runs)
    faces = load()
    embed_faces(model, faces[:8], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    embed_faces(model, faces, batch_size=batch_size)
    embed_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(pairs), 2, 512))
    metrics_s = median_s(
        lambda: evaluate_folds(pair_distances(emb[:, 0], emb[:, 1]), pairs.issame, pairs.fold_ids), runs
    )
    scale = len(images) / len(faces)
    total = (read_s + embed_s) * scale + metrics_s
    return {
        "mode": f"extrapolated from {len(faces)} faces ({source})",
        "pairs": len(pairs),
        "images": len(images),
        "embed_images_per_s": round(len(faces) / embed_s, 1),
        "read_s_subset": round(read_s, 2),
        "metrics_s": round(metrics_s, 2),
        "seconds": round(total, 1),
    }


def main() -> None:
    shared = Path(os.environ.get("FACETOOL_SHARED", "/work/shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/lfw-faces.h5"))
    parser.add_argument("--pairs", type=Path, default=shared / "lfw" / "pairs.txt")
    parser.add_argument("--images", type=int, default=256, help="subset size when extrapolating")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--extrapolate", action="store_true", help="time a subset even when the cache exists")
    parser.add_argument("--runs", type=int, default=3, help="runs of the cheap phases when extrapolating")
    add_report_options(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_backbone(embedding_dim=512, dropout=0.0, image_size=160).eval()
    cpu_started = time.process_time()
    if args.cache.is_file() and not args.extrapolate:
        result = full_run(model, args.cache, args.pairs, args.batch_size)
    else:
        lfw_dir = shared / "lfw" / "lfw-deepfunneled"
        result = extrapolated(model, args.cache, args.pairs, lfw_dir, args.images, args.batch_size, args.runs)
    result["cpu_seconds_total"] = round(time.process_time() - cpu_started, 1)
    result["torch_threads"] = torch.get_num_threads()
    result["cpu_count"] = os.cpu_count()
    result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    result["within_6_minutes"] = result["seconds"] < LIMIT_S
    print(json.dumps(result, indent=2))
    report = report_file(args)
    if report is not None:
        title = f"facetool eval time, LFW View 2: {result['seconds']} s ({result['mode']})"
        rows = [
            [key, value if isinstance(value, str) else json.dumps(value)] for key, value in result.items()
        ]
        append_section(report, title, ("what", "value"), rows, script=__file__)


if __name__ == "__main__":
    main()
