"""Time every registered miner on one FaceNet round: 45 people x 40 images, 512-d embeddings.

Prints a table with the median (and min/max) over several runs of the full, validated `miner(...)` call,
and appends it with machine and command to --report (docs/benchmarks.md by default).
Usage: python benchmarks/mining.py [--runs 9] [--device cpu] [--threads N] [--people 45] [--images 40]
       [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console
from timing import call_times

from facetool.miners import available_miners, get_miner
from facetool.miners.base import squared_distances

NOISE = 2.5
KINDS = ("uniform", "clustered")


def make_embeddings(kind: str, people: int, images: int, dim: int, device: torch.device) -> torch.Tensor:
    """`uniform`: random unit vectors (an untrained network: most negatives are semi-hard, the worst case).
    `clustered`: unit vectors around one centre per person (a half-trained network: few semi-hard negatives)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(people * images, dim, generator=g)
    if kind == "clustered":
        noise = torch.randn(people, dim, generator=g).repeat_interleave(images, dim=0) + NOISE * noise
    return torch.nn.functional.normalize(noise, dim=1).to(device)


def time_call(fn: Callable[[], object], device: torch.device, runs: int) -> tuple[float, float, float]:
    """Median, min and max milliseconds of `runs` calls of `fn` after one warm-up."""
    times = [t * 1000 for t in call_times(fn, runs, device)]
    return statistics.median(times), min(times), max(times)


def time_miner(name: str, emb: torch.Tensor, labels: torch.Tensor, margin: float, runs: int) -> dict:
    """Timing of the full, validated `miner(...)` call, and the result's sizes."""
    miner = get_miner(name, generator=torch.Generator(device=emb.device).manual_seed(0))
    median, low, high = time_call(lambda: miner(emb, labels, margin), emb.device, runs)
    result = miner(emb, labels, margin)
    return {
        "median": median,
        "min": low,
        "max": high,
        "pairs": result.num_pairs,
        "triplets": result.num_triplets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--people", type=int, default=45)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--margin", type=float, default=0.2)
    add_report_options(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    labels = torch.arange(args.people, device=device).repeat_interleave(args.images)
    title = (
        f"mining {len(labels)} embeddings ({args.people} x {args.images}, D={args.dim}, margin {args.margin}) "
        f"on {device}, {torch.get_num_threads()} threads, median of {args.runs} runs"
    )
    header = ("miner", "embeddings", "median ms", "min ms", "max ms", "pairs", "triplets")
    rows = []
    for kind in KINDS:
        emb = make_embeddings(kind, args.people, args.images, args.dim, device)
        floor = time_call(lambda e=emb: squared_distances(e), emb.device, args.runs)
        rows.append(["(distances only)", kind, *(f"{t:.1f}" for t in floor), "", ""])
        for name in available_miners():
            r = time_miner(name, emb, labels, args.margin, args.runs)
            times = (f"{r[key]:.1f}" for key in ("median", "min", "max"))
            rows.append([name, kind, *times, str(r["pairs"]), str(r["triplets"])])
    table = rich_table(title, header, rows, left=2)
    Console(width=max(Console().width, 100)).print(table)
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, rows, script=__file__, device=device)


if __name__ == "__main__":
    main()
