"""One training step of facetool's engine against a bare torch step, side by side in one process (issue 36).

Both steps train their own copy of the same backbone (same initial weights, same memory layout) with the same
optimizer kind, on the same augmented input of `batch_size` images ordered anchors, positives, negatives, with
the triplet loss. The bare step is the classic loop: zero_grad, forward, L2-normalise, triplet loss, backward,
optimizer step. The engine's step is `Engine.step` as `facetool train` runs it (its non-finite guard, the
plan's fused optimizer and layout). The variants are called in alternation (A B B A ...), so a load change on
a shared machine hits both alike; each row gives the median and the minor page faults per step
(getrusage ru_minflt), and the last column the engine's median over the bare one.
`--layouts` times both steps in each memory layout of model and input: contiguous NCHW, input-only (weights
NCHW, input channels_last: what the augmenter's output gives a CPU run without a planned layout) and
channels_last. `--keep-memory` adds rows with glibc's trim and mmap thresholds raised before each such step
(facetool.training.allocator), and set back to glibc's defaults before each other step.
Usage: python benchmarks/step_vs_bare.py [--threads 1] [--backbone tiny-cnn-gdc] [--image-size 64]
       [--batch-size 90] [--runs 15] [--layouts contiguous input-only channels_last] [--keep-memory]
       [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console

from facetool.config.train import AugmentConfig, EngineConfig, TrainConfig
from facetool.data.augment import Augmenter
from facetool.device import resolve_device
from facetool.losses import TripletLoss
from facetool.models import build_backbone
from facetool.training.allocator import set_kept
from facetool.training.engine import OPTIMIZERS, Engine, plan_engine

CL, NCHW = torch.channels_last, torch.contiguous_format
# layout name: (the model's weights, the input)
LAYOUTS = {"contiguous": (NCHW, NCHW), "input-only": (NCHW, CL), "channels_last": (CL, CL)}
# the engine setting that plans each layout on a CPU
PLANNED: dict[str, bool | None] = {"contiguous": False, "input-only": None, "channels_last": True}


def bare_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, margin: float
) -> Callable[[], None]:
    """The classic FaceNet step on `x` (anchors; positives; negatives), plain torch only."""

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        anchor, positive, negative = F.normalize(model(x), dim=1).chunk(3)
        d_ap = (anchor - positive).pow(2).sum(dim=1)
        d_an = (anchor - negative).pow(2).sum(dim=1)
        (d_ap - d_an + margin).clamp_min(0.0).mean().backward()
        optimizer.step()

    return step


def engine_step(engine: Engine, x: torch.Tensor) -> Callable[[], None]:
    """One `Engine.step`, its loss read as the epoch runner reads it on a CPU."""

    def step() -> None:
        loss, _ = engine.step(x)
        loss.item()

    return step


def alternate(variants: dict[str, Callable[[], None]], runs: int) -> dict[str, tuple[list[float], list[int]]]:
    """Seconds and minor page faults of each call, the variants called in turns (A B, then B A, ...)."""
    names = list(variants)
    for name in names:
        variants[name]()
    out: dict[str, tuple[list[float], list[int]]] = {name: ([], []) for name in names}
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            variants[name]()
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--backbone", default="tiny-cnn-gdc")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=90)
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument(
        "--keep-memory", action="store_true", help="also time with the allocator's memory kept"
    )
    add_report_options(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device("cpu")
    config = TrainConfig(backbone=args.backbone, image_size=args.image_size, optimizer=args.optimizer)
    torch.manual_seed(0)
    base = build_backbone(args.backbone, embedding_dim=config.embedding_dim, image_size=args.image_size)
    rng = np.random.default_rng(0)
    faces = torch.from_numpy(
        rng.integers(0, 256, (args.batch_size, args.image_size, args.image_size, 3), dtype=np.uint8)
    )
    augment = Augmenter(AugmentConfig(), args.image_size)
    x0 = augment(faces, torch.Generator().manual_seed(0))
    margin = TripletLoss(num_classes=0, embedding_dim=0).margin

    variants: dict[str, Callable[[], None]] = {}
    keeps = [False, True] if args.keep_memory else [False]
    for layout in args.layouts:
        fmt, input_fmt = LAYOUTS[layout]
        x = x0.contiguous(memory_format=input_fmt)
        plan = plan_engine(EngineConfig(), device, args.optimizer, channels_last=PLANNED[layout])
        model = copy.deepcopy(base).to(memory_format=fmt)
        optimizer = OPTIMIZERS[args.optimizer](model.parameters(), config, plan.fused)
        engine = Engine(model, optimizer, device, torch.float32, args.image_size, 256, plan=plan)
        bare_model = copy.deepcopy(base).to(memory_format=fmt)
        bare_opt = OPTIMIZERS[args.optimizer](bare_model.parameters(), config, plan.fused)
        for keep in keeps:
            suffix = ", memory kept" if keep else ""
            variants[f"bare, {layout}{suffix}"] = kept(bare_step(bare_model, bare_opt, x, margin), keep)
            variants[f"engine, {layout}{suffix}"] = kept(engine_step(engine, x), keep)

    times = alternate(variants, args.runs)
    rows = []
    for name, (seconds, faults) in times.items():
        rest = name.split(", ", 1)[1]
        bare = statistics.median(times[f"bare, {rest}"][0])
        median = statistics.median(seconds)
        rows.append(
            [
                name,
                f"{median * 1000:.1f}",
                f"{min(seconds) * 1000:.1f}",
                f"{statistics.median(faults):,.0f}",
                f"{median / bare:.3f}",
            ]
        )
    title = (
        f"one training step, facetool's engine against a bare torch step: {args.backbone} {args.image_size} px, "
        f"{args.batch_size} images, {args.optimizer}, {torch.get_num_threads()} threads, median of {args.runs} "
        "alternated runs"
    )
    header = ("variant", "median ms", "min ms", "page faults/step", "/ bare")
    Console().print(rich_table(title, header, rows))
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, rows, script=__file__, device=device)


def kept(step: Callable[[], None], keep: bool) -> Callable[[], None]:
    """`step`, run with glibc's thresholds raised (`keep`) or at their defaults, set before the step."""

    def run() -> None:
        set_kept(keep)
        step()

    return run


if __name__ == "__main__":
    main()
