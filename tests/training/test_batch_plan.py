"""The batch plan a loss's `needs` chooses: the rows of each step, as the seed's rules take them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from facetool.miners import MiningResult
from facetool.training.batch_plan import GroupPlan, LabelPlan, TripletPlan, plan_for

CPU = torch.device("cpu")


@dataclass
class FakeRound:
    inputs: torch.Tensor
    mined: MiningResult | None
    host_labels: np.ndarray | None

    @property
    def images(self) -> int:
        return len(self.inputs)


def test_each_need_has_its_plan():
    assert type(plan_for("triplets", 90)) is TripletPlan and plan_for("triplets", 90).per_step == 30
    assert type(plan_for("labels", 90)) is LabelPlan and plan_for("labels", 90).per_step == 90
    assert type(plan_for("groups", 90)) is GroupPlan and plan_for("groups", 90).mines is False


@pytest.mark.parametrize("items", [1, 29, 30, 31, 95])
def test_triplets_fill_a_last_short_step_images_keep_to_whole_batches(items):
    assert TripletPlan(90).steps(items) == -(-items // 30)
    assert LabelPlan(30).steps(items) == max(items // 30, 1)


def test_triplet_roles_are_the_mined_triplets_in_one_random_order():
    mined = MiningResult(
        anchors=torch.tensor([0, 1, 2, 3]), positives=torch.tensor([4, 5, 6, 7]),
        negatives=torch.tensor([8, 9, 10, 11]), num_pairs=6,
    )  # fmt: skip
    plan = TripletPlan(6)
    a, p, n = plan.roles(FakeRound(torch.zeros(12, 3, 2, 2), mined, None), np.random.default_rng(0), CPU)
    order = np.random.default_rng(0).permutation(4)
    assert (
        a.tolist() == order.tolist()
        and p.tolist() == (order + 4).tolist()
        and n.tolist() == (order + 8).tolist()
    )
    assert plan.trained_triplets(12) == 4 and "6 anchor-positive pairs, 4 triplets" in plan.describe(
        FakeRound(torch.zeros(12, 3, 2, 2), mined, None)
    )


def test_group_roles_keep_each_persons_images_side_by_side():
    labels = np.repeat(np.arange(5), 4)
    (order,) = GroupPlan(8).roles(
        FakeRound(torch.zeros(20, 3, 2, 2), None, labels), np.random.default_rng(3), CPU
    )
    people = labels[order.numpy()]
    assert sorted(order.tolist()) == list(range(20))
    assert all(len(set(people[i : i + 4])) == 1 for i in range(0, 20, 4)), people
    assert GroupPlan(8).miner_name("semihard") == "none" and GroupPlan(8).trained_triplets(20) == 0
