"""One prepared check for a GPU session: build a small LFW cache, benchmark the step engines, time real epochs.

1. Builds a face cache of LFW centre crops (identities with enough images for 45 x 40 rounds) unless --cache
   gives one; the detector is not what is measured here.
2. Runs benchmarks/train_gpu.py's comparison (eager vs CUDA graph, + torch.compile with --with-compile).
3. Trains one real epoch at the spec's defaults (45 people x 40 images, 90-image steps, epoch_size 1000)
   with each engine mode, through `facetool.training.loop.train`, and prints a short table last:
   the epoch's training seconds against the 30 s goal.
Usage: python benchmarks/gpu_check.py [--lfw DIR] [--cache faces.h5] [--work DIR] [--epoch-size 1000]
       [--with-compile] [--smoke]   (--smoke: tiny CPU settings, to check the script itself)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_gpu
from lfw_cache import build_cache

from facetool.config.train import TrainConfig
from facetool.training.loop import train

GOAL_S = 30.0


def real_epoch(cache: Path, run_dir: Path, mode: str, args: argparse.Namespace) -> dict:
    """One epoch of `facetool train` with engine.compile=mode; its history record."""
    settings = {
        "data_dir": cache,
        "checkpoint_dir": run_dir,
        "num_epochs": 1,
        "epoch_size": args.epoch_size,
        "device": args.device,
        "engine": {"compile": mode},
        "validation": {"fraction": 0.0},
        "learning_rate": 0.01,
        **args.train_overrides,
    }
    return train(TrainConfig.model_validate(settings)).history[0]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    shared = Path(os.environ.get("FACETOOL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=shared / "lfw" / "lfw-deepfunneled")
    parser.add_argument("--cache", type=Path, default=None, help="an existing face cache to use")
    parser.add_argument("--work", type=Path, default=Path("/tmp/facetool-gpu-check"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epoch-size", type=int, default=1000)
    parser.add_argument("--with-compile", action="store_true", help="also torch.compile (slow to compile)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    args.modes = ["none", "cuda-graph"] + (["reduce-overhead"] if args.with_compile else [])
    args.train_overrides = {}
    args.bench = ["--device", args.device, "--modes", *args.modes, "--repeats", "3"]
    args.min_images, args.max_identities, args.size = 10, 400, 160
    if args.smoke:
        args.device, args.epoch_size = "cpu", 4
        args.min_images, args.max_identities, args.size = 4, 8, 48
        args.train_overrides = {
            "backbone": "tiny-cnn", "image_size": 48, "embedding_dim": 16, "batch_size": 30,
            "people_per_batch": 6, "images_per_person": 4, "threads": 1,
        }  # fmt: skip
        args.bench = ["--smoke", "--modes", *args.modes]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    console = Console()
    console.print(
        f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}"
    )
    cache = args.cache
    if cache is None:
        cache = args.work / "faces.h5"
        if not cache.is_file():
            start = time.perf_counter()
            build_cache(
                args.lfw,
                cache,
                min_images=args.min_images,
                max_identities=args.max_identities,
                size=args.size,
                source="gpu_check",
            )
            console.print(f"built {cache} in {time.perf_counter() - start:.1f} s")
    bench = [*args.bench, "--cache", str(cache), "--report", str(args.work / "benchmarks.md")]
    if not args.smoke:
        bench += ["--batch-sizes", "90", "270", "1080"]
    train_gpu.run(train_gpu.parse(bench))

    summary = Table(
        title=f"one real epoch at {args.epoch_size} steps (goal: <= {GOAL_S:.0f} s at 1000 steps)"
    )
    for column in ("engine", "train s", "train img/s", "triplets", "skipped", "loss"):
        summary.add_column(column, justify="left" if column == "engine" else "right")
    for mode in args.modes:
        record = real_epoch(cache, args.work / f"run-{mode}", mode, args)
        seconds = record["images"] / max(record["images_per_s"], 1e-9)
        loss = record["train_loss"]
        summary.add_row(
            mode,
            f"{seconds:.1f}",
            f"{record['images_per_s']:,.0f}",
            str(record["triplets"]),
            str(record["skipped_batches"]),
            "-" if loss is None else f"{loss:.4f}",
        )
    console.print(summary)


if __name__ == "__main__":
    main()
