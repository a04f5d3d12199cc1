"""Images per second of the gradient-free embedding pass (mining, validation) per chunk size (issue 36).

`Engine.embed_inputs` on a round of standardised inputs, split into chunks of `embed_batch_size`; the chunk sizes
are timed in alternation (A B C, C B A, ...) in one process, so a load change on a shared machine hits all
alike. Inputs are random (the time does not depend on content), in the layout a CPU run plans.
Usage: python benchmarks/embed_batch.py [--backbone tiny-cnn-gdc] [--image-size 64] [--images 1800]
       [--sizes 32 64 90 128 256] [--threads 1] [--runs 5] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console

from facetool.config.train import EngineConfig, TrainConfig
from facetool.device import resolve_device
from facetool.models import build_backbone
from facetool.training.engine import OPTIMIZERS, Engine, plan_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-cnn-gdc")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1800, help="images of one round (people x images)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 90, 128, 256])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    add_report_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device("cpu")
    config = TrainConfig(backbone=args.backbone, image_size=args.image_size)
    torch.manual_seed(0)
    model = build_backbone(args.backbone, embedding_dim=config.embedding_dim, image_size=args.image_size)
    plan = plan_engine(EngineConfig(), device, "adam")
    engine = Engine(model, OPTIMIZERS["adam"](model.parameters(), config, plan.fused), device, torch.float32,
                    args.image_size, args.sizes[0], plan=plan)  # fmt: skip
    x = torch.randn(args.images, 3, args.image_size, args.image_size).contiguous(
        memory_format=torch.channels_last
    )
    times: dict[int, list[float]] = {size: [] for size in args.sizes}
    for run in range(args.runs + 1):
        for size in args.sizes if run % 2 == 0 else reversed(args.sizes):
            engine.embed_batch_size = size
            start = time.perf_counter()
            engine.embed_inputs(x)
            if run:
                times[size].append(time.perf_counter() - start)
    best = min(statistics.median(t) for t in times.values())
    rows = [
        [size, f"{statistics.median(t):.2f}", f"{args.images / statistics.median(t):.0f}",
         f"{statistics.median(t) / best:.2f}"]
        for size, t in times.items()
    ]  # fmt: skip
    title = (
        f"embedding pass per chunk size: {args.backbone} {args.image_size} px, {args.images} images, "
        f"{torch.get_num_threads()} threads, median of {args.runs} alternated runs"
    )
    header = ("embed_batch_size", "seconds", "images/s", "/ fastest")
    Console().print(rich_table(title, header, rows))
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, rows, script=__file__, device=device)


if __name__ == "__main__":
    main()
