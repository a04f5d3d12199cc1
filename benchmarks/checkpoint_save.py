"""Time the end-of-epoch checkpoint files of an improving epoch (last.pth and best.pth, plus history.json):
the two full atomic writes facetool made before, against one write and a linked copy, side by side.

    python benchmarks/checkpoint_save.py [--backbone inception_resnet_v1] [--runs 5] [--work DIR]

The checkpoint is a real one: the backbone's weights with Adam's state after one step, serialised as the
trainer does. Medians of --runs, the variants alternated.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from facetool.files import atomic_write_bytes
from facetool.models import build_backbone
from facetool.models.checkpoint import checkpoint_bytes, make_checkpoint
from facetool.training.run_folder import BEST, LAST, RunFolder


def real_checkpoint(backbone: str, image_size: int) -> memoryview:
    """A checkpoint of `backbone` with Adam's moments filled, as the trainer serialises it."""
    model = build_backbone(backbone, image_size=image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    model(torch.rand(4, 3, image_size, image_size)).sum().backward()
    optimizer.step()
    return checkpoint_bytes(
        make_checkpoint(
            model=model.state_dict(),
            backbone={"name": backbone},
            config={},
            epoch=1,
            history=[],
            optimizer=optimizer.state_dict(),
            loss={},
            scheduler={},
            rng={},
            train_identities=[],
        )
    )


def two_writes(folder: Path, data: memoryview) -> None:
    """What an improving epoch cost before: last.pth and best.pth each serialised to disk and fsynced."""
    atomic_write_bytes(folder / LAST, data)
    atomic_write_bytes(folder / BEST, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="inception_resnet_v1")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    data = real_checkpoint(args.backbone, args.image_size)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        before, after = Path(work) / "before", Path(work) / "after"
        before.mkdir()
        folder = RunFolder(after)
        times: dict[str, list[float]] = {"two writes (before)": [], "write + link (now)": []}
        for _ in range(args.runs):
            start = time.perf_counter()
            two_writes(before, data)
            times["two writes (before)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            folder.save_epoch(data, 1, best=True, periodic=False, history=[])
            times["write + link (now)"].append(time.perf_counter() - start)
        folder.close()
    print(f"checkpoint of {args.backbone}: {len(data) / 1e6:.1f} MB, medians of {args.runs}")
    for name, values in times.items():
        print(f"  {name:22s} {statistics.median(values):.3f} s")


if __name__ == "__main__":
    main()
