"""People batches as FaceNet samples them: some identities, up to a fixed number of images of each, and
optionally single faces of other people as extra negatives."""

from __future__ import annotations

import numpy as np


class PeopleSampler:
    """Draws selection rounds from labels; every identity it picks for a round has at least two images.

    With `extra_negatives` each round also ends in that many faces of people outside the round, one face per
    person and any person (one with a single image too): they share no label within the round, so a miner can
    only use them as negatives. Randomness comes only from the generator passed to `sample`, so a seeded
    generator repeats a run, and without extra negatives the draws are those of a sampler that has none.
    """

    def __init__(
        self, labels: np.ndarray, people_per_batch: int, images_per_person: int, extra_negatives: int = 0
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        ids, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        members = [order[s : s + c] for s, c in zip(starts, counts, strict=True)]
        eligible = np.flatnonzero(counts >= 2)
        self._members = [members[i] for i in eligible]
        self._everyone = members
        self._eligible = eligible
        self.identities = ids[eligible]
        if len(self._members) < 2:
            raise ValueError("sampling needs at least two identities with two or more images")
        self.people_per_batch = min(people_per_batch, len(self._members))
        self.images_per_person = images_per_person
        self.extra_negatives = min(extra_negatives, len(members) - self.people_per_batch)

    @property
    def num_identities(self) -> int:
        return len(self._members)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of one round, grouped by identity (identities and images in random order), then the extra
        negatives."""
        people = rng.choice(len(self._members), size=self.people_per_batch, replace=False)
        parts = []
        for person in people:
            members = self._members[person]
            take = min(len(members), self.images_per_person)
            parts.append(rng.choice(members, size=take, replace=False))
        if self.extra_negatives:
            others = np.ones(len(self._everyone), dtype=bool)
            others[self._eligible[people]] = False
            for person in rng.choice(np.flatnonzero(others), size=self.extra_negatives, replace=False):
                parts.append(rng.choice(self._everyone[person], size=1))
        return np.concatenate(parts)


def people_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of a round's rows that keeps each label's rows side by side: the people in random order,
    each person's rows in random order. Cut into consecutive batches, it gives P×K-style batches in which a
    person's positives share the anchor's batch (but for the person a cut falls on)."""
    labels = np.asarray(labels)
    rows = rng.permutation(len(labels))
    _, first, group = np.unique(labels[rows], return_index=True, return_inverse=True)
    rank = rng.permutation(len(first))
    return rows[np.argsort(rank[group], kind="stable")]
