"""Drawing, for every anchor-positive pair, a uniformly random negative whose distance lies in a window.

Both semi-hard rules are windows on d(a, n): `d < upper` (classic) or `lower < d < upper` (paper). Exact and
vectorised in two stages:

1. Rejection: each pair draws uniform other-identity candidates (8, then 64 more for the pairs still open) and
   keeps the first inside its window.
   The first success of i.i.d. uniform draws is uniform over the window, so this is exact; it settles almost
   every pair when windows are wide (an untrained network).
2. The pairs still open are settled by sorting their anchors' candidate distances (only those inside the
   widest open window of the row) and drawing a uniform position between two binary searches. Pairs whose window is empty produce no triplet.

Comparisons run on `order_keys` (float32 bit patterns), so stage 2 agrees with stage 1 bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facetool.miners.base import Pairs, order_keys, sample_in_range, uniform_negatives

REJECTION_ROUNDS = (8, 64)
NO_NEGATIVE = -1
INF_KEY = 0x7F800000  # order_keys(+inf)


def candidate_keys(dist: Tensor, same: Tensor, above: Tensor | None, below: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, ascending `order_keys` of other-identity distances d with above < d < below (row bounds), and
    their column indices; rows padded with +inf keys to the widest row.

    The candidates are packed to the left first (a cumulative sum gives each its slot), so only they are sorted.
    """
    keys = order_keys(dist.masked_fill(same, float("inf")))
    inside = keys < order_keys(below)[:, None]
    if above is not None:
        inside &= keys > order_keys(above)[:, None]
    width = int(inside.sum(dim=1).max()) if keys.numel() else 0
    rows, cols = inside.nonzero(as_tuple=True)
    slots = inside.cumsum(dim=1)[rows, cols] - 1
    packed = torch.full((keys.shape[0], width), INF_KEY, dtype=keys.dtype, device=keys.device)
    packed[rows, slots] = keys[rows, cols]
    columns = torch.zeros((keys.shape[0], width), dtype=torch.long, device=keys.device)
    columns[rows, slots] = cols
    packed, order = torch.sort(packed, dim=1)
    return packed, columns.gather(1, order)


def _settle_by_sorting(
    dist: Tensor,
    labels: Tensor,
    pairs: Pairs,
    lower: Tensor | None,
    upper: Tensor,
    open_pairs: Tensor,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Stage 2 for the pairs marked in `open_pairs` (N, K): returns rows, a keep mask and negatives."""
    rows = open_pairs.any(dim=1).nonzero()[:, 0]
    todo = open_pairs[rows]
    sub_upper = upper[rows]
    row_below = sub_upper.masked_fill(~todo, 0.0).amax(dim=1)
    sub_lower, row_above = None, None
    if lower is not None:
        sub_lower = lower[rows]
        row_above = sub_lower.masked_fill(~todo, float("inf")).amin(dim=1)
    same = labels[rows][:, None] == labels[None, :]
    keys, columns = candidate_keys(dist[rows], same, row_above, row_below)
    high = torch.searchsorted(keys, order_keys(sub_upper), right=False)
    low = (
        torch.zeros_like(high)
        if sub_lower is None
        else torch.searchsorted(keys, order_keys(sub_lower), right=True)
    )
    keep = todo & (high > low)
    pick = sample_in_range(low[keep], high[keep], generator)
    return rows, keep, columns[keep.nonzero()[:, 0], pick]


def _reject(
    dist: Tensor,
    labels: Tensor,
    anchors: Tensor,
    lower: Tensor | None,
    upper: Tensor,
    draws: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Stage 1 for flat pairs whose anchor has negatives: `draws` uniform other-identity candidates each;
    returns (settled mask, first candidate inside the window)."""
    candidates = uniform_negatives(labels, anchors, draws, generator)
    d = torch.take(dist, anchors[:, None] * dist.shape[1] + candidates)
    ok = d < upper[:, None]
    if lower is not None:
        ok &= d > lower[:, None]
    first = ok.to(torch.uint8).argmax(dim=1)
    return ok.any(dim=1), candidates.gather(1, first[:, None])[:, 0]


def negatives_in_window(
    dist: Tensor,
    labels: Tensor,
    pairs: Pairs,
    lower: Tensor | None,
    upper: Tensor,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Anchors, positives and one uniform other-identity negative n per pair with lower < d(a,n) < upper.

    `lower` (or None for no lower bound) and `upper` are non-negative and shaped like `pairs.members`. A NaN
    bound or distance (a diverged network) admits no negative.
    """
    upper = upper.masked_fill(upper.isnan(), 0.0)
    anchors = pairs.valid.nonzero()[:, 0]
    flat_upper = upper[pairs.valid]
    flat_lower = None if lower is None else lower[pairs.valid]
    found = torch.full_like(anchors, NO_NEGATIVE)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    has_negatives = counts[inverse][anchors] < labels.numel()
    todo = has_negatives.nonzero()[:, 0]
    for draws in REJECTION_ROUNDS:
        if todo.numel() == 0:
            break
        lo = None if flat_lower is None else flat_lower[todo]
        hit, first = _reject(dist, labels, anchors[todo], lo, flat_upper[todo], draws, generator)
        found[todo[hit]] = first[hit]
        todo = todo[~hit]
    table = torch.full_like(pairs.members, NO_NEGATIVE)
    table[pairs.valid] = found
    if todo.numel():
        open_pairs = torch.zeros(anchors.numel(), dtype=torch.bool, device=anchors.device)
        open_pairs[todo] = True
        open_table = torch.zeros_like(pairs.valid)
        open_table[pairs.valid] = open_pairs
        rows, keep, sorted_found = _settle_by_sorting(
            dist, labels, pairs, lower, upper, open_table, generator
        )
        sub = table[rows]
        sub[keep] = sorted_found
        table[rows] = sub
    settled = table != NO_NEGATIVE
    return settled.nonzero()[:, 0], pairs.members[settled], table[settled]
