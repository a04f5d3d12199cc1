"""Validation each epoch: triplet loss on fixed held-out triplets and verification accuracy on fixed pairs.

The triplets and pairs are drawn once from a seeded generator, so every epoch is measured on the same data.
With a pairs file, accuracy comes from `facetool.evaluation.run.evaluate_on_pairs`, the code `facetool eval`
runs, so both report the same number for the same checkpoint. Held-out faces come from a `FaceSource`, read
`VAL_CHUNK` at a time (the next chunk while the current one embeds), so validation holds no whole set either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetool.cache import open_cache
from facetool.data.source import FaceSource
from facetool.evaluation.metrics import verification_accuracy
from facetool.evaluation.pairs import check_images, read_pairs
from facetool.evaluation.run import evaluate_on_pairs
from facetool.losses import triplet_loss
from facetool.training.engine import Engine

VAL_CHUNK = 1024


@dataclass(frozen=True)
class ValidationResult:
    """One epoch's validation figures; None where that part of validation is not configured."""

    loss: float | None
    accuracy: float | None
    accuracy_std: float | None


def draw_triplets(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) anchor, positive, negative indices; anchors from identities with two or more images.

    Drawn for all rows at once (identities grouped by a stable sort), so even the largest `num_pairs` the
    configuration allows takes well under a second.
    """
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    usable = np.flatnonzero(sizes >= 2)
    person = usable[rng.integers(len(usable), size=count)]
    size, start = sizes[person], starts[person]
    first = rng.integers(size)
    second = rng.integers(size - 1)
    second += second >= first
    negative = rng.integers(len(labels) - size)
    negative += np.where(negative >= start, size, 0)
    return np.stack([order[start + first], order[start + second], order[negative]], axis=1)


def draw_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(count, 2) index pairs, matched and mismatched alternating (so every fold holds both), and issame."""
    triplets = draw_triplets(labels, count, rng)
    issame = np.arange(count) % 2 == 0
    pairs = np.where(issame[:, None], triplets[:, :2], triplets[:, [0, 2]])
    return pairs, issame


class Validator:
    """Measures a model on held-out identities and/or a pairs file, with the same data every epoch."""

    def __init__(
        self,
        valset: FaceSource | None,
        *,
        num_pairs: int,
        seed: int,
        margin: float,
        pairs_file: Path | None = None,
        pairs_cache: Path | None = None,
    ) -> None:
        self.valset = valset
        self.margin = margin
        self.pairs_file = pairs_file
        self.pairs_cache = pairs_cache
        if pairs_file is not None:
            self._check_pairs_file()
        if valset is not None:
            labels = valset.labels
            rng = np.random.default_rng([seed, 0x7A1])
            self.triplets = draw_triplets(labels, num_pairs, rng)
            self.pairs, self.issame = draw_pairs(labels, num_pairs, rng)
            self.used = np.unique(np.concatenate([self.triplets.ravel(), self.pairs.ravel()]))

    @property
    def active(self) -> bool:
        return self.valset is not None or self.pairs_file is not None

    def __call__(self, engine: Engine) -> ValidationResult:
        """Validate the engine's model (eval mode, clean inputs, no gradients)."""
        loss = accuracy = std = None
        if self.valset is not None:
            emb = self._embed_used(engine)
            t = torch.as_tensor(self.triplets)
            loss = float(triplet_loss(emb[t[:, 0]], emb[t[:, 1]], emb[t[:, 2]], self.margin))
            p = torch.as_tensor(self.pairs)
            dist = ((emb[p[:, 0]] - emb[p[:, 1]]) ** 2).sum(1).numpy()
            accuracy, std = (float(v) for v in verification_accuracy(dist, self.issame))
        if self.pairs_file is not None:
            accuracy, std = self._pairs_file_accuracy(engine)
        return ValidationResult(loss, accuracy, std)

    def _embed_used(self, engine: Engine) -> torch.Tensor:
        """Embeddings of the validation faces the triplets and pairs use (zero elsewhere), read in chunks."""
        assert self.valset is not None
        chunks = [self.used[i : i + VAL_CHUNK] for i in range(0, len(self.used), VAL_CHUNK)]
        parts = []
        for k, rows in enumerate(chunks):
            if k + 1 < len(chunks):
                self.valset.prefetch(chunks[k + 1])
            parts.append(engine.embed(self.valset.fetch(rows, engine.device)).float().cpu())
        part = torch.cat(parts)
        emb = torch.zeros(len(self.valset), part.shape[1])
        emb[torch.as_tensor(self.used)] = part
        return emb

    def _check_pairs_file(self) -> None:
        """Fail before training, not after the first epoch, when the pairs file or its images are unusable."""
        pairs = read_pairs(self.pairs_file)
        with open_cache(self.pairs_cache) as cache:
            check_images(pairs, set(cache.paths), str(self.pairs_cache))

    def _pairs_file_accuracy(self, engine: Engine) -> tuple[float, float]:
        with open_cache(self.pairs_cache) as cache:
            report = evaluate_on_pairs(
                engine.model, cache, self.pairs_file, device=engine.device, image_size=engine.image_size
            )
        engine.model.eval()
        return float(report.accuracy), float(report.accuracy_std)
