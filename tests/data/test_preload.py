"""Placing the face set: accelerator memory when it fits, host memory otherwise; gathering a round."""

from __future__ import annotations

import pytest
import torch

from facetool.data.faceset import FaceSet
from facetool.data.preload import choose_placement, gather, place_faceset

GIB = 1 << 30


@pytest.mark.parametrize(
    ("mode", "device", "nbytes", "free", "expected"),
    [
        ("auto", "cuda", 1 * GIB, 100 * GIB, "device"),
        ("auto", "cuda", 60 * GIB, 100 * GIB, "host"),
        ("auto", "cuda", 1 * GIB, None, "host"),
        ("device", "cuda", 60 * GIB, 100 * GIB, "device"),
        ("host", "cuda", 1, 100 * GIB, "host"),
        ("host", "cpu", 1, None, "device"),
        ("auto", "cpu", 10 * GIB, None, "device"),
    ],
)
def test_choose_placement(mode, device, nbytes, free, expected):
    assert choose_placement(mode, torch.device(device), nbytes, free) == expected


def test_place_and_gather_on_cpu():
    faces = torch.arange(5 * 4 * 4 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(5, 4, 4, 3)
    faceset = FaceSet(faces, torch.tensor([0, 0, 1, 1, 1]), ["a", "b"])
    placed, where = place_faceset(faceset, torch.device("cpu"), "host")
    assert where == "device" and placed.faces.dtype == torch.uint8
    picked = gather(placed, torch.tensor([4, 0]), torch.device("cpu"))
    assert torch.equal(picked, faces[[4, 0]])
