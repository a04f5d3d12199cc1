"""facetool-extras' losses: found through entry points, keep the loss contract (facetool's own helper)."""

from __future__ import annotations

import pytest
import torch
from facetool_extras.margin_softmax import ArcFaceLoss, arcface_target

from facetool import plugins
from facetool.losses.testing import check_loss


def test_losses_are_found_through_entry_points() -> None:
    rows = {r.name: r for r in plugins.list_plugins(plugins.LOSSES, package="facetool-extras")}
    assert set(rows) == {"arcface", "cosface", "arcface-triplet", "batch-hard"}
    assert all(r.status == "ok" and r.description for r in rows.values())


@pytest.mark.parametrize(
    "name,settings",
    [
        ("arcface", None),
        ("arcface", {"scale": 30.0, "margin": 0.3}),
        ("cosface", {"scale": 30.0, "margin": 0.2}),
        ("arcface-triplet", {"softmax": "cosface", "triplet_weight": 0.5}),
        ("batch-hard", None),
        ("batch-hard", {"margin": "hinge", "distance": "squared"}),
    ],
)
def test_each_loss_keeps_the_contract(name: str, settings: dict | None) -> None:
    check_loss(name, settings)


def test_arcface_target_falls_as_the_angle_grows() -> None:
    theta = torch.linspace(0.0, torch.pi, 2001, dtype=torch.float64)
    target = arcface_target(torch.cos(theta), 0.5)
    assert bool((target[1:] < target[:-1]).all())
    assert check_loss(ArcFaceLoss).centres.shape == (7, 8)
