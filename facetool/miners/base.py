"""The miner interface: every miner's output is checked here, so a faulty plugin fails loudly with its name.

Shared vectorised building blocks live here too: the squared-distance matrix, the anchor-positive pairs, and
sampling one index per pair from a range. Anchor-positive pairs follow the classic FaceNet `select_triplets`:
every unordered pair of images of one identity, the anchor being the earlier index.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from facetool.config.base import NoSettings, StrictModel
from facetool.errors import PluginError
from facetool.plugins import call_plugin


@dataclass(frozen=True)
class MiningResult:
    """Triplets as int64 index tensors into the embeddings, on the embeddings' device."""

    anchors: Tensor
    positives: Tensor
    negatives: Tensor
    num_pairs: int

    @property
    def num_triplets(self) -> int:
        """How many triplets were selected."""
        return int(self.anchors.numel())


@dataclass(frozen=True)
class Pairs:
    """Anchor-positive pairs grouped by anchor: row `a` of `members` lists the candidates for anchor `a`.

    `members` is (N, K) with K the size of the largest identity; `valid` marks real pairs (same identity, later
    index). Flattening `valid` row-major gives the pairs in (anchor, positive) order.
    """

    members: Tensor
    valid: Tensor

    @property
    def anchors(self) -> Tensor:
        """Anchor index of every pair."""
        return self.valid.nonzero()[:, 0]

    @property
    def positives(self) -> Tensor:
        """Positive index of every pair."""
        return self.members[self.valid]


def squared_distances(embeddings: Tensor) -> Tensor:
    """(N, N) squared Euclidean distances in float32, clamped at +0.0 (never -0.0, see `order_keys`); NaN stays."""
    x = embeddings.float()
    sq = (x * x).sum(dim=1)
    dist = torch.addmm(sq[None, :], x, x.T, alpha=-2.0).add_(sq[:, None])
    return dist.clamp_min_(0.0).add_(0.0)


def order_keys(values: Tensor) -> Tensor:
    """The int32 bit patterns of non-negative float32 values: same order, exact, and far cheaper to sort."""
    return values.contiguous().view(torch.int32)


def anchor_positive_pairs(labels: Tensor) -> Pairs:
    """All (a, p) with labels[a] == labels[p] and a < p, as a padded per-anchor table."""
    n = labels.numel()
    device = labels.device
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    k = int(counts.max()) if n else 0
    cols = torch.arange(k, device=device)
    slot = starts[inverse][:, None] + cols[None, :]
    valid = cols[None, :] < counts[inverse][:, None]
    members = order[slot.clamp_max(max(n - 1, 0))]
    valid &= members > torch.arange(n, device=device)[:, None]
    return Pairs(members=members, valid=valid)


def sample_in_range(low: Tensor, high: Tensor, generator: torch.Generator | None) -> Tensor:
    """One uniform integer in [low, high) per element; callers keep only elements with high > low."""
    device = generator.device if generator is not None else low.device
    u = torch.rand(low.shape, generator=generator, device=device).to(low.device)
    span = (high - low).clamp_min(1)
    pick = low + (u * span).long()
    return torch.minimum(pick, low + span - 1)


def uniform_negatives(
    labels: Tensor, anchors: Tensor, draws: int, generator: torch.Generator | None
) -> Tensor:
    """(len(anchors), draws) independent uniformly random indices whose label differs from the anchor's.

    Works on label-sorted positions: anchor a's negatives are every position outside its identity's block, so a
    draw k in [0, N − |block|) maps to k, or k + |block| past the block's start. Anchors whose identity fills the
    batch have no negative: their entries are meaningless and callers must drop them.
    """
    n = labels.numel()
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    block = inverse[anchors]
    starts = (torch.cumsum(counts, 0) - counts)[block][:, None]
    sizes = counts[block][:, None]
    span = (n - sizes).clamp_min(1)
    device = generator.device if generator is not None else labels.device
    u = torch.rand((anchors.numel(), draws), generator=generator, device=device).to(labels.device)
    k = torch.minimum((u * span).long(), span - 1)
    return order[(k + sizes * (k >= starts)).clamp_max(n - 1)]


def empty_result(device: torch.device, num_pairs: int = 0) -> MiningResult:
    """A result with no triplets."""
    empty = torch.empty(0, dtype=torch.long, device=device)
    return MiningResult(empty, empty.clone(), empty.clone(), num_pairs)


class Miner(ABC):
    """Selects triplets from a batch of embeddings; call the instance, implement `mine`.

    `mine(embeddings, labels, margin, generator)` returns `(anchors, positives, negatives)` index tensors;
    `__call__` runs it without gradients and checks shapes, dtypes, devices, index range and the label rule
    (anchor and positive share a label and differ, the negative has another label), raising PluginError naming
    the miner otherwise; an exception or `sys.exit()` inside `mine` is a PluginError naming it too. Randomness
    comes from `generator` (per call, else the one given at construction, else the global torch RNG), so seeded
    runs are reproducible. A miner's own settings are its pydantic `Settings` model, filled from the `[miner]`
    table of the training config.
    """

    name: ClassVar[str] = "miner"
    description: ClassVar[str] = ""
    Settings: ClassVar[type[StrictModel]] = NoSettings

    def __init__(
        self,
        settings: StrictModel | None = None,
        *,
        generator: torch.Generator | None = None,
        name: str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else type(self).Settings()
        self.generator = generator
        self.plugin_name = name or type(self).name

    @abstractmethod
    def mine(
        self, embeddings: Tensor, labels: Tensor, margin: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return anchors, positives and negatives as int64 index tensors on the embeddings' device."""

    def count_pairs(self, labels: Tensor) -> int:
        """Anchor-positive pairs considered: unordered same-identity pairs."""
        _, counts = torch.unique(labels, return_counts=True)
        return int((counts * (counts - 1) // 2).sum())

    def __call__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        margin: float,
        generator: torch.Generator | None = None,
    ) -> MiningResult:
        """Mine triplets from (N, D) embeddings and (N,) integer labels; validated."""
        _check_inputs(embeddings, labels)
        gen = generator if generator is not None else self.generator
        labels = labels.to(embeddings.device)
        if labels.numel() == 0:
            return empty_result(embeddings.device)
        with torch.no_grad():
            detached = embeddings.detach()
            out = call_plugin(
                f"miner {self.plugin_name!r} failed", self.mine, detached, labels, float(margin), gen
            )
            anchors, positives, negatives = self._validate(out, labels, embeddings.device)
        return MiningResult(anchors, positives, negatives, self.count_pairs(labels))

    def _validate(self, out: object, labels: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        def fail(why: str) -> PluginError:
            return PluginError(f"miner {self.plugin_name!r} broke its contract: {why}")

        if not isinstance(out, tuple | list) or len(out) != 3:
            raise fail(f"expected (anchors, positives, negatives), got {type(out).__name__}")
        if not all(isinstance(t, Tensor) for t in out):
            raise fail("anchors, positives and negatives must be tensors")
        anchors, positives, negatives = out
        for role, t in zip(("anchors", "positives", "negatives"), out, strict=True):
            if t.dtype != torch.long:
                raise fail(f"{role} have dtype {t.dtype}, expected torch.int64")
            if t.dim() != 1:
                raise fail(f"{role} have shape {tuple(t.shape)}, expected one dimension")
            if t.device != device:
                raise fail(f"{role} are on {t.device}, the embeddings on {device}")
        if not anchors.numel() == positives.numel() == negatives.numel():
            raise fail(
                f"lengths differ: {anchors.numel()} anchors, {positives.numel()} positives, "
                f"{negatives.numel()} negatives"
            )
        if anchors.numel() == 0:
            return anchors, positives, negatives
        n = labels.numel()
        stacked = torch.stack((anchors, positives, negatives))
        if bool((stacked < 0).any()) or bool((stacked >= n).any()):
            raise fail(f"an index is outside [0, {n})")
        if bool((anchors == positives).any()):
            raise fail("an anchor is its own positive")
        if bool((labels[anchors] != labels[positives]).any()):
            raise fail("an anchor and its positive have different labels")
        if bool((labels[anchors] == labels[negatives]).any()):
            raise fail("a negative has the anchor's label")
        return anchors, positives, negatives


def _check_inputs(embeddings: Tensor, labels: Tensor) -> None:
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError("embeddings must be a floating-point tensor of shape (N, D)")
    if (
        not isinstance(labels, Tensor)
        or labels.dim() != 1
        or labels.is_floating_point()
        or labels.is_complex()
    ):
        raise ValueError("labels must be an integer tensor of shape (N,)")
    if labels.numel() != embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {labels.numel()} labels")
