"""Pairs among people held out of training, written as an LFW View 1 pairs file, to choose a threshold on.

The protocol's own threshold pairs name people the model trained on (View 1's DevTrain, View 2's other
folds). Distances within trained people run smaller than within new ones, far smaller after a class-based
loss, so a threshold chosen there can sit too low for the test's new people. Holding a seeded share of the
training people out and drawing pairs among them gives a threshold chosen the way the test is scored: on
people the model has never seen.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facetool.errors import UsageError

LFW_IMAGE = re.compile(r"(?P<name>[^/\\]+)/(?P=name)_(?P<index>\d{4,})\.jpg")


@dataclass(frozen=True)
class HeldOutPairs:
    """The people held out and the pairs drawn among them, as `(name, i, j)` and `(name1, i, name2, j)`."""

    people: list[str]
    matched: list[tuple[str, int, int]]
    mismatched: list[tuple[str, int, str, int]]

    def to_text(self) -> str:
        """The View 1 layout: the count, then the matched lines, then the mismatched ones (tab-separated)."""
        lines = [str(len(self.matched))]
        lines += [f"{n}\t{i}\t{j}" for n, i, j in self.matched]
        lines += [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in self.mismatched]
        return "\n".join(lines) + "\n"


def images_by_person(paths: Iterable[str]) -> dict[str, list[int]]:
    """Image numbers of each person among cache paths of the LFW form `name/name_NNNN.jpg` (others skipped)."""
    found: dict[str, list[int]] = defaultdict(list)
    for path in paths:
        match = LFW_IMAGE.fullmatch(path)
        if match:
            found[match["name"]].append(int(match["index"]))
    return {name: sorted(set(numbers)) for name, numbers in found.items()}


def hold_out_pairs(images: dict[str, list[int]], fraction: float, pairs: int, seed: int) -> HeldOutPairs:
    """Hold out `fraction` of the people with two or more images (at least two people) and draw `pairs`
    matched and `pairs` mismatched pairs among them, all from a generator seeded with `seed`.

    Matched pairs go round the held-out people in shuffled rounds, so every person gives about as many (a
    person with many images does not fill the file); mismatched pairs join two different held-out people.
    UsageError when there are too few people to hold out.
    """
    if not 0 < fraction < 1:
        raise UsageError(f"threshold_holdout {fraction}: must lie between 0 and 1")
    candidates = sorted(name for name, numbers in images.items() if len(numbers) >= 2)
    count = round(fraction * len(candidates))
    if count < 2:
        raise UsageError(
            f"threshold_holdout {fraction}: {len(candidates)} people with two or more images give "
            f"{count} to hold out, and the threshold pairs need at least 2"
        )
    rng = np.random.default_rng([seed, 0x7E5])
    people = sorted(candidates[i] for i in rng.choice(len(candidates), size=count, replace=False))
    matched = []
    order: list[str] = []
    for _ in range(pairs):
        if not order:
            order = [people[i] for i in rng.permutation(count)]
        name = order.pop()
        i, j = sorted(int(v) for v in rng.choice(images[name], size=2, replace=False))
        matched.append((name, i, j))
    mismatched = []
    for _ in range(pairs):
        a, b = rng.choice(count, size=2, replace=False)
        first, second = sorted((people[a], people[b]))
        mismatched.append((first, int(rng.choice(images[first])), second, int(rng.choice(images[second]))))
    return HeldOutPairs(people, matched, mismatched)
