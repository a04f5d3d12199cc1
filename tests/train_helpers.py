"""Helpers shared by the training tests (tests/train, tests/losses)."""

from __future__ import annotations

from pathlib import Path

from cache_helpers import write_people_cache

from facetool.train.progress import TrainProgress

SIZE = 96


def build_lfw_cache(
    lfw_dir: Path, path: Path, *, identities: int = 10, per_identity: int = 6, singles: int = 1
) -> Path:
    """Write a cache of `identities` LFW people with >= 4 images (plus `singles` one-image people)."""
    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())
    counts = {name: len(list((lfw_dir / name).glob("*.jpg"))) for name in names[:400]}
    many = [n for n in names[:400] if counts[n] >= 4][:identities]
    one = [n for n in names[:400] if counts[n] == 1][:singles]
    return write_people_cache(lfw_dir, path, many + one, per_identity, SIZE)


class StopAfter(TrainProgress):
    """Interrupts training (as Ctrl-C would) once epoch `epochs` has been checkpointed."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def epoch_end(self, record) -> None:
        if record["epoch"] == self.epochs:
            raise KeyboardInterrupt
