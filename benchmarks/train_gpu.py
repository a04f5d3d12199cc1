"""Training throughput of the step engines side by side: eager vs torch.compile vs one CUDA graph per step.

For each engine mode and batch size (images per step): images/s of the training step (median over `repeats`
runs of `steps` steps, after warm-up, which includes compilation or graph capture), the time of one
selection round (augmentation, gradient-free forward and mining of people x images faces), and the epoch
time these imply at `epoch_size` steps. A mode that cannot run on the device is shown with the mode it fell
back to. Faces are random uint8 unless --cache gives a face cache. Appends machine, command and table to
--report (docs/benchmarks.md by default; not in --smoke runs unless --report is given).
Usage: python benchmarks/train_gpu.py [--device auto] [--modes none reduce-overhead cuda-graph]
       [--batch-sizes 90 270 1080] [--repeats 5] [--steps 20] [--cache faces.h5] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from report import append_section, parse_args, rich_table
from rich.console import Console

from facetool.config.train import AugmentConfig, EngineConfig, TrainConfig
from facetool.data.augment import Augmenter
from facetool.device import resolve_device, resolve_precision
from facetool.miners import get_miner
from facetool.models import build_backbone
from facetool.training.engine import OPTIMIZERS, Engine, plan_engine

SMOKE = {
    "backbone": "tiny-cnn",
    "image_size": 48,
    "embedding_dim": 16,
    "batch_sizes": [30],
    "people": 6,
    "images": 4,
    "repeats": 2,
    "steps": 3,
    "epoch_size": 10,
    "device": "cpu",
}


@dataclass(frozen=True)
class Row:
    mode: str
    batch: int
    step_s: float
    images_per_s: float
    round_s: float
    triplets: int
    epoch_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_faces(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """people x images faces (uint8 NHWC) and labels, from --cache or random."""
    n = args.people * args.images
    if args.cache:
        from facetool.data.choose import open_face_source

        source, _ = open_face_source(args.cache, mode="stream", workers=1)
        with source:
            labels = source.labels
            ids = [i for i in np.unique(labels) if (labels == i).sum() >= 2][: args.people]
            idx = np.concatenate([np.flatnonzero(labels == i)[: args.images] for i in ids])
            faces = source.fetch(idx, device)
        return faces, torch.as_tensor(labels[idx], device=device)
    rng = np.random.default_rng(0)
    size = args.image_size
    faces = torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)).to(device)
    return faces, torch.arange(args.people, device=device).repeat_interleave(args.images)


def measure(mode: str, batch: int, args: argparse.Namespace, device: torch.device, faces, labels) -> Row:
    """One engine mode at one batch size."""
    dtype = resolve_precision("auto", device)
    config = TrainConfig(learning_rate=1e-3, image_size=args.image_size)
    torch.manual_seed(0)
    model = build_backbone(args.backbone, embedding_dim=args.embedding_dim, image_size=args.image_size)
    model = model.to(device)
    plan = plan_engine(EngineConfig(compile=mode), device, "adam")
    optimizer = OPTIMIZERS["adam"](model.parameters(), config, plan.fused)
    engine = Engine(model, optimizer, device, dtype, args.image_size, 600, plan=plan)
    augment = Augmenter(AugmentConfig(), args.image_size)
    generator = torch.Generator(device=device).manual_seed(0)
    miner = get_miner("semihard", generator=torch.Generator(device=device).manual_seed(0))
    found: list[int] = []

    def selection_round() -> None:
        found.append(
            int(
                miner(
                    engine.embed_inputs(augment(faces, generator)), labels, engine.criterion.margin
                ).num_triplets
            )
        )

    selection_round()
    round_s = _median_seconds(selection_round, args.repeats, device)
    x = augment(faces[torch.arange(batch, device=device) % len(faces)], generator)

    def steps() -> None:
        for _ in range(args.steps):
            engine.step(x)

    for _ in range(3):
        engine.step(x)
    step_s = _median_seconds(steps, args.repeats, device) / args.steps
    triplets = int(statistics.median(found))
    steps_per_round = max(1, math.ceil(triplets / (batch // 3)))
    epoch_s = args.epoch_size * step_s + math.ceil(args.epoch_size / steps_per_round) * round_s
    return Row(plan.compile, batch, step_s, batch / step_s, round_s, triplets, epoch_s)


HEADER = ("asked", "ran", "images/step", "step ms", "train img/s", "round s", "triplets/round", "epoch s")


def cells(asked: str, r: Row) -> list[str]:
    """One table row: the mode asked for, then what ran and its figures."""
    return [
        asked,
        r.mode,
        str(r.batch),
        f"{r.step_s * 1000:.1f}",
        f"{r.images_per_s:,.0f}",
        f"{r.round_s:.3f}",
        str(r.triplets),
        f"{r.epoch_s:.1f}",
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", nargs="+", default=["none", "reduce-overhead", "cuda-graph"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[90, 270, 1080])
    parser.add_argument("--backbone", default="inception_resnet_v1")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--people", type=int, default=45)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--epoch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None, help="face cache to take faces from")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU settings, to check the script runs")
    return parse_args(parser, argv, SMOKE)


def run(args: argparse.Namespace) -> list[tuple[str, Row]]:
    """Measure every mode x batch size; print the table; append it to the report if one is set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    faces, labels = load_faces(args, device)
    rows = [
        (mode, measure(mode, batch, args, device, faces, labels))
        for batch in args.batch_sizes
        for mode in args.modes
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    title = (
        f"train step engines: {args.backbone} {args.image_size}px, {args.people}x{args.images} rounds, "
        f"{name}, torch {torch.__version__}"
    )
    table = [cells(asked, r) for asked, r in rows]
    Console().print(rich_table(title, HEADER, table, left=2))
    if args.report is not None:
        append_section(args.report, title, HEADER, table, script=__file__, argv=args.argv, device=device)
    return rows


if __name__ == "__main__":
    run(parse())
