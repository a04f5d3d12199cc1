"""Training throughput at small settings: images/s of one training step and of one selection round.

A training step is what `facetool train` runs per batch (forward of `batch_size` images ordered anchors,
positives, negatives; triplet loss; backward; optimizer step). A selection round is augmentation of
people x images faces on the device, the gradient-free embedding pass and triplet selection with the miner.
Faces are random uint8 images (throughput does not depend on content). Median over the timed repeats.
Prints the table and appends it with machine and command to --report (docs/benchmarks.md by default).
Usage: python benchmarks/train_cpu.py [--device cpu] [--threads N] [--backbone inception_resnet_v1]
       [--image-size 160] [--batch-size 30 90] [--people 10] [--images 6] [--repeats 3]
       [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch
from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console
from timing import call_times

from facetool.config.train import AugmentConfig, TrainConfig
from facetool.data.augment import Augmenter
from facetool.device import resolve_device, resolve_precision
from facetool.miners import get_miner
from facetool.models import build_backbone
from facetool.training.engine import OPTIMIZERS, Engine


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    return statistics.median(call_times(fn, repeats, device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--backbone", default="inception_resnet_v1")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[30, 90], help="images per step")
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    add_report_options(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_precision("auto", device)
    config = TrainConfig(backbone=args.backbone, image_size=args.image_size, learning_rate=1e-3)
    torch.manual_seed(0)
    model = build_backbone(args.backbone, image_size=args.image_size).to(device)
    engine = Engine(
        model, OPTIMIZERS["adam"](model.parameters(), config, False), device, dtype, args.image_size, 256
    )
    rng = np.random.default_rng(0)
    augment = Augmenter(AugmentConfig(), args.image_size)
    generator = torch.Generator(device=device).manual_seed(0)
    miner = get_miner("semihard", generator=torch.Generator(device=device).manual_seed(0))

    n = args.people * args.images
    faces = torch.from_numpy(rng.integers(0, 256, (n, args.image_size, args.image_size, 3), dtype=np.uint8))
    faces = faces.to(device)
    labels = torch.arange(args.people, device=device).repeat_interleave(args.images)

    def selection_round() -> None:
        miner(engine.embed_inputs(augment(faces, generator)), labels, engine.criterion.margin)

    seconds = timed(selection_round, args.repeats, device)
    rows = [
        [f"selection round ({args.people} people x {args.images})", n, f"{seconds:.3f}", f"{n / seconds:.1f}"]
    ]

    for batch in args.batch_size:
        x = augment(faces[torch.arange(batch, device=device) % n], generator)
        seconds = timed(lambda x=x: engine.step(x), args.repeats, device)
        rows.append(
            [f"training step ({batch // 3} triplets)", batch, f"{seconds:.3f}", f"{batch / seconds:.1f}"]
        )
    title = (
        f"{args.backbone} {args.image_size}px on {device} ({torch.get_num_threads()} threads), "
        f"median of {args.repeats} runs"
    )
    header = ("what", "images", "seconds", "images/s")
    Console().print(rich_table(title, header, rows))
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, rows, script=__file__, device=device)


if __name__ == "__main__":
    main()
