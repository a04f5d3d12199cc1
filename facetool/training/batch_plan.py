"""How a run's steps take their rows from a selection round, chosen once from the loss's `needs`.

- `triplets`: the round is embedded and mined; each step takes batch_size / 3 triplets in a random order,
  laid out [anchors; positives; negatives]; a round's last step may be short.
- `labels`: each step takes batch_size of the round's images in a random order, whole batches only (a tail
  of one image would break batch norm); a round smaller than a batch is one batch.
- `groups`: as `labels`, but the order keeps each person's images side by side (P×K batches).

The plan owns the round's count, its steps, the rows of each step and the round's log text, so the epoch
runner has no branch on the kind of loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from facetool.data.sampling import people_order
from facetool.miners import MiningResult


class PlannedRound(Protocol):
    """What a plan reads of a selection round (facetool.training.selection.Round is one)."""

    inputs: torch.Tensor
    mined: MiningResult | None
    host_labels: np.ndarray | None

    @property
    def images(self) -> int: ...


@dataclass(frozen=True)
class BatchPlan(ABC):
    """How steps of `batch_size` images take their rows from a round; `mines` says whether rounds are mined."""

    batch_size: int
    needs: ClassVar[str]
    mines: ClassVar[bool]

    @property
    @abstractmethod
    def per_step(self) -> int:
        """Items (triplets, or images) one step takes."""

    @abstractmethod
    def items(self, selected: PlannedRound) -> int:
        """What the round offers the steps: its triplets, or its images."""

    @abstractmethod
    def steps(self, items: int) -> int:
        """Steps the round fills (before the epoch's end caps them)."""

    @abstractmethod
    def roles(self, selected: PlannedRound, rng: np.random.Generator, device: torch.device) -> tuple:
        """Row indices into the round's inputs, one tensor per role, in the order the steps take them."""

    @abstractmethod
    def describe(self, selected: PlannedRound) -> str:
        """The round's mining, as its log line says it."""

    @abstractmethod
    def trained_triplets(self, images: int) -> int:
        """Triplets trained on, from the images the steps took."""

    @abstractmethod
    def miner_name(self, name: str) -> str:
        """The epoch's miner as the history records it."""


@dataclass(frozen=True)
class TripletPlan(BatchPlan):
    """Mined triplets: the plan of the triplet loss and any loss whose `needs` is `triplets`."""

    needs: ClassVar[str] = "triplets"
    mines: ClassVar[bool] = True

    @property
    def per_step(self) -> int:
        return self.batch_size // 3

    def items(self, selected: PlannedRound) -> int:
        return int(selected.mined.num_triplets) if selected.mined is not None else 0

    def steps(self, items: int) -> int:
        return -(-items // self.per_step)

    def roles(self, selected: PlannedRound, rng: np.random.Generator, device: torch.device) -> tuple:
        mined = selected.mined
        order = torch.as_tensor(rng.permutation(self.items(selected)), device=device)
        return tuple(t.index_select(0, order) for t in (mined.anchors, mined.positives, mined.negatives))

    def describe(self, selected: PlannedRound) -> str:
        mined = selected.mined
        pairs, found = (int(mined.num_pairs), int(mined.num_triplets)) if mined is not None else (0, 0)
        return (
            f", {pairs} anchor-positive pairs, {found} triplets "
            f"({found / max(pairs, 1):.1%} with a valid negative)"
        )

    def trained_triplets(self, images: int) -> int:
        return images // 3

    def miner_name(self, name: str) -> str:
        return name


@dataclass(frozen=True)
class LabelPlan(BatchPlan):
    """Labelled images, no mining: class-based losses."""

    needs: ClassVar[str] = "labels"
    mines: ClassVar[bool] = False

    @property
    def per_step(self) -> int:
        return self.batch_size

    def items(self, selected: PlannedRound) -> int:
        return selected.images

    def steps(self, items: int) -> int:
        return max(items // self.per_step, 1)

    def order(self, selected: PlannedRound, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.items(selected))

    def roles(self, selected: PlannedRound, rng: np.random.Generator, device: torch.device) -> tuple:
        return (torch.as_tensor(self.order(selected, rng), device=device),)

    def describe(self, selected: PlannedRound) -> str:
        return ", labelled batches (no mining)"

    def trained_triplets(self, images: int) -> int:
        return 0

    def miner_name(self, name: str) -> str:
        return "none"


@dataclass(frozen=True)
class GroupPlan(LabelPlan):
    """Whole people side by side, no mining: losses that mine inside the batch (batch-hard)."""

    needs: ClassVar[str] = "groups"

    def order(self, selected: PlannedRound, rng: np.random.Generator) -> np.ndarray:
        return people_order(selected.host_labels, rng)

    def describe(self, selected: PlannedRound) -> str:
        return ", batches of whole people (no mining)"


PLANS: dict[str, type[BatchPlan]] = {plan.needs: plan for plan in (TripletPlan, LabelPlan, GroupPlan)}


def plan_for(needs: str, batch_size: int) -> BatchPlan:
    """The plan of a loss that `needs` triplets, labels or groups, with steps of `batch_size` images."""
    return PLANS[needs](batch_size)
