"""People batches as FaceNet samples them: some identities, up to a fixed number of images of each."""

from __future__ import annotations

import numpy as np


class PeopleSampler:
    """Draws selection rounds from labels; every identity it may pick has at least two images.

    Randomness comes only from the generator passed to `sample`, so a seeded generator repeats a run.
    """

    def __init__(self, labels: np.ndarray, people_per_batch: int, images_per_person: int) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        ids, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        eligible = counts >= 2
        self._members = [order[s : s + c] for s, c, ok in zip(starts, counts, eligible, strict=True) if ok]
        self.identities = ids[eligible]
        if len(self._members) < 2:
            raise ValueError("sampling needs at least two identities with two or more images")
        self.people_per_batch = min(people_per_batch, len(self._members))
        self.images_per_person = images_per_person

    @property
    def num_identities(self) -> int:
        return len(self._members)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of one round, grouped by identity (identities and images in random order)."""
        people = rng.choice(len(self._members), size=self.people_per_batch, replace=False)
        parts = []
        for person in people:
            members = self._members[person]
            take = min(len(members), self.images_per_person)
            parts.append(rng.choice(members, size=take, replace=False))
        return np.concatenate(parts)
