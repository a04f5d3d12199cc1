"""Images/s of the training data path, side by side: preloading a face cache, gathering rounds, augmenting them.

The variants, each the median of --runs runs after one warm-up:
  preload             open the face cache as a preloaded source in host memory (`open_face_source(...,
                      mode="preload")`, pinned when the device is CUDA) and decode every face
  gather              per selection round: `PeopleSampler` draws --people x --images indices, `fetch` brings
                      those faces from host memory to the device (with their labels), as the training loop does
  gather + augment    the same plus on-device augmentation (`Augmenter`, default AugmentConfig), whose output is
                      the standardised network input the loop embeds
  gather + to_input   the same with the un-augmented standardisation (`to_input`, what validation and eval use)
  resize once         what training does once instead with `data.resize_once` (`resize_once`): every preloaded
                      face resized to the augmenter's working size as float (a run resizes each on its first
                      round; here all at once)
  resized + augment   per round from those: `fetch` the rows' float faces, then the augmentation after the
                      resize (`Augmenter.from_working`); the same network input as gather + augment, bit for bit
A round run repeats the same --rounds rounds (a sampler seeded afresh each run), so every run does equal work.
Without --cache, a small cache of LFW centre crops is built in a temporary folder first (not timed).
Prints the table and appends it with machine and command to --report (docs/benchmarks.md by default; not for
--smoke runs unless --report is given).
Usage: python benchmarks/loader.py [--device auto|cpu|cuda] [--cache faces.h5] [--threads N] [--runs 5]
       [--rounds 10] [--people 45] [--images 40] [--image-size 160] [--smoke] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from lfw_cache import build_cache
from report import append_section, parse_args, rich_table
from rich.console import Console
from timing import call_times

from facetool.config.train import AugmentConfig
from facetool.data.augment import Augmenter
from facetool.data.choose import open_face_source
from facetool.data.resized import ResizedFaces, resize_once
from facetool.data.sampling import PeopleSampler
from facetool.data.source import PreloadedSource
from facetool.data.transforms import to_input
from facetool.device import resolve_device

SMOKE = {
    "device": "cpu",
    "identities": 8,
    "min_images": 4,
    "face_size": 64,
    "image_size": 48,
    "people": 6,
    "images": 4,
    "runs": 2,
    "rounds": 2,
}
HEADER = ("variant", "images/run", "median ms", "min ms", "max ms", "images/s", "ms/round")


def default_cache(args: argparse.Namespace, folder: Path) -> Path:
    """A face cache of LFW centre crops (--identities people with >= --min-images images each) in `folder`."""
    return build_cache(
        args.lfw,
        folder / "faces.h5",
        min_images=args.min_images,
        max_identities=args.identities,
        size=args.face_size,
        source="loader benchmark",
    )


def preload(cache: Path, device: torch.device) -> PreloadedSource:
    """What preloaded training does once at start: every face decoded into one tensor, in host memory."""
    source, _ = open_face_source(cache, mode="preload", device="cpu")
    assert isinstance(source, PreloadedSource)
    if device.type == "cuda":
        source.pin = True
    source.faces  # noqa: B018 - the first access decodes
    return source


def resize_all(faces: PreloadedSource, augment: Augmenter) -> torch.Tensor | None:
    """Every face resized once, as a run's rounds resize them over its first epochs."""
    once, _ = resize_once(faces, augment)
    return None if once is None else once.faces


def round_variants(
    faces: PreloadedSource,
    args: argparse.Namespace,
    device: torch.device,
    augment: Augmenter,
    once: ResizedFaces | None,
) -> tuple[dict[str, Callable[[], object]], int]:
    """The per-round variants, each running the same --rounds rounds, and the images those rounds hold; with
    `once`, the faces resized once, also the rounds taken from those."""
    sampler = PeopleSampler(faces.labels, args.people, args.images)
    generator = torch.Generator(device=device).manual_seed(0)

    def rounds(
        finish: Callable[[torch.Tensor], object], source: PreloadedSource | ResizedFaces = faces
    ) -> Callable[[], None]:
        def run() -> None:
            rng = np.random.default_rng(0)
            for _ in range(args.rounds):
                rows = sampler.sample(rng)
                torch.as_tensor(faces.labels[rows], device=device)
                finish(source.fetch(rows, device))

        return run

    rng = np.random.default_rng(0)
    images = sum(len(sampler.sample(rng)) for _ in range(args.rounds))
    variants = {
        "gather": rounds(lambda x: x),
        "gather + augment": rounds(lambda x: augment(x, generator)),
        "gather + to_input": rounds(lambda x: to_input(x, device, args.image_size)),
    }
    if once is not None:
        variants["resized + augment"] = rounds(lambda x: augment.from_working(x, generator), once)
    return variants, images


def row(variant: str, images: int, times: list[float], rounds: int | None) -> list[str]:
    """One table row from the run times of one variant."""
    median = statistics.median(times)
    per_round = f"{median / rounds * 1000:.1f}" if rounds else "-"
    milliseconds = (f"{t * 1000:.1f}" for t in (median, min(times), max(times)))
    return [variant, f"{images:,}", *milliseconds, f"{images / median:,.0f}", per_round]


def measure(cache: Path, args: argparse.Namespace, device: torch.device) -> tuple[str, list[list[str]]]:
    """The table's title and one row per variant."""
    preload_times = call_times(lambda: preload(cache, device), args.runs, device)
    faces = preload(cache, device)
    augment = Augmenter(AugmentConfig(), args.image_size)
    rows = [row("preload", len(faces), preload_times, None)]
    once, note = resize_once(faces, augment)
    if once is None:
        Console().print(f"no resize-once rows: {note}")
    else:
        resize_times = call_times(lambda: resize_all(faces, augment), args.runs, device)
        rows.append(row("resize once", len(faces), resize_times, None))
    variants, images = round_variants(faces, args, device, augment, once)
    for name, fn in variants.items():
        rows.append(row(name, images, call_times(fn, args.runs, device), args.rounds))
    where = "pinned host" if device.type == "cuda" else "host"
    title = (
        f"data loading: {len(faces):,} faces of {faces.num_identities:,} people at {faces.image_size} px "
        f"({cache.name}) in {where} memory; rounds of {args.people} x {args.images} ({images / args.rounds:.0f} "
        f"images) to {device}, input {args.image_size} px; {torch.get_num_threads()} threads, "
        f"median of {args.runs} runs"
    )
    return title, rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with --smoke's settings applied and the report file resolved."""
    shared = Path(os.environ.get("FACETOOL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--cache", type=Path, default=None, help="face cache (default: LFW crops built now)")
    parser.add_argument("--lfw", type=Path, default=shared / "lfw" / "lfw-deepfunneled")
    parser.add_argument("--identities", type=int, default=300, help="people in the default cache")
    parser.add_argument("--min-images", type=int, default=2, help="images per person in the default cache")
    parser.add_argument("--face-size", type=int, default=160, help="face size of the default cache")
    parser.add_argument("--image-size", type=int, default=160, help="network input size")
    parser.add_argument("--people", type=int, default=45)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10, help="selection rounds per timed run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU settings, to check the script runs")
    return parse_args(parser, argv, SMOKE)


def run(args: argparse.Namespace) -> list[list[str]]:
    """Measure every variant; print the table; append it to the report if one is set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or default_cache(args, Path(tmp))
        title, rows = measure(cache, args, device)
    Console(width=max(Console().width, 120)).print(rich_table(title, HEADER, rows))
    if args.report is not None:
        append_section(args.report, title, HEADER, rows, script=__file__, argv=args.argv, device=device)
    return rows


if __name__ == "__main__":
    run(parse())
