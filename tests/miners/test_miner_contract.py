"""The Miner base class rejects a miner that breaks the contract, naming it; get_miner finds the built-ins."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from facetool.errors import PluginError
from facetool.miners import DEFAULT_MINER, Miner, available_miners, get_miner

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
EMB = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)


def long(*values: int) -> Tensor:
    return torch.tensor(values, dtype=torch.long)


BAD_OUTPUTS = {
    "negative shares the label": ((long(0), long(1), long(1)), "negative has the anchor's label"),
    "anchor is its own positive": ((long(0), long(0), long(2)), "its own positive"),
    "positive of another identity": ((long(0), long(2), long(4)), "different labels"),
    "index out of range": ((long(0), long(1), long(6)), "outside"),
    "negative index": ((long(0), long(1), long(-1)), "outside"),
    "float indices": ((long(0), long(1), torch.tensor([2.0])), "dtype"),
    "lengths differ": ((long(0, 2), long(1, 3), long(4)), "lengths differ"),
    "two-dimensional": ((long(0)[None], long(1)[None], long(2)[None]), "shape"),
    "not a triple": ((long(0), long(1)), "expected"),
    "not tensors": (([0], [1], [2]), "tensors"),
}


class FixedMiner(Miner):
    """Returns whatever it was given, to exercise the validation."""

    name = "fixed"

    def __init__(self, output: object, name: str) -> None:
        super().__init__(name=name)
        self.output = output

    def mine(self, embeddings, labels, margin, generator):  # type: ignore[no-untyped-def]
        return self.output


class CrashingMiner(Miner):
    name = "crashing"

    def mine(self, embeddings, labels, margin, generator):  # type: ignore[no-untyped-def]
        raise IndexError("boom")


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_invalid_triplets_are_rejected_naming_the_miner(case: str) -> None:
    output, why = BAD_OUTPUTS[case]
    with pytest.raises(PluginError, match=rf"miner 'my-bad-miner' broke its contract: .*{why}"):
        FixedMiner(output, "my-bad-miner")(EMB, LABELS, 0.2)


def test_a_valid_output_passes_and_counts_pairs() -> None:
    result = FixedMiner((long(0, 2), long(1, 3), long(4, 5)), "ok")(EMB, LABELS, 0.2)
    assert result.num_triplets == 2 and result.num_pairs == 3


def test_a_crashing_miner_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match="miner 'crashing' failed: IndexError: boom"):
        CrashingMiner()(EMB, LABELS, 0.2)


def test_built_ins_are_registered_and_default_is_semihard() -> None:
    assert {"semihard", "semihard-strict", "hard", "random"} <= set(available_miners())
    assert DEFAULT_MINER == "semihard"
    miner = get_miner()
    assert isinstance(miner, Miner) and miner.plugin_name == "semihard"


def test_unknown_miner_lists_the_available_ones() -> None:
    with pytest.raises(
        PluginError, match=r"unknown miner 'semi-hard'; available: .*semihard, semihard-strict"
    ):
        get_miner("semi-hard")
