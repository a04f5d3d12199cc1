"""The loss contract: the base class names a plugin that breaks it; `[loss]` settings are validated by the plugin;
the third-party helper passes every built-in loss and fails broken ones."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from plugin_helpers import plugin_site
from torch import Tensor

from facetool.config.base import load_config
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, PluginError
from facetool.losses import Loss, get_loss
from facetool.losses.testing import check_loss


def inputs(n: int = 6, dim: int = 4) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(n, dim, generator=g), dim=1).requires_grad_(True)
    return emb, torch.arange(n) % 3


def broken(result) -> Loss:
    class Broken(Loss):
        name = "broken"
        description = "breaks the contract"

        def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
            return result(embeddings)

    return Broken(num_classes=3, embedding_dim=4, name="my-broken")


@pytest.mark.parametrize(
    "result,why",
    [
        (lambda e: e.sum(dim=1), r"returned shape \(6,\), not a scalar"),
        (lambda e: e.sum() * math.nan, "returned nan for finite embeddings"),
        (lambda e: e.sum().detach(), "returned a loss with no gradient"),
        (lambda e: 3.0, "returned float, not a tensor"),
        (lambda e: (e.sum() > 0).long(), "returned dtype torch.int64, not floating point"),
    ],
)
def test_base_class_names_the_plugin_that_breaks_the_contract(result, why: str) -> None:
    loss = broken(result)
    with pytest.raises(PluginError, match=rf"loss 'my-broken' broke its contract: {why}"):
        loss(*inputs())


def test_an_exception_or_exit_inside_a_loss_is_its_plugin_error() -> None:
    def explode(e: Tensor) -> Tensor:
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match="loss 'my-broken' failed: RuntimeError: boom"):
        broken(explode)(*inputs())

    def leave(e: Tensor) -> Tensor:
        raise SystemExit(3)

    with pytest.raises(PluginError, match=r"loss 'my-broken' failed: the plugin called sys.exit\(3\)"):
        broken(leave)(*inputs())


def test_nan_from_nan_inputs_is_not_a_contract_break() -> None:
    loss = get_loss("triplet", num_classes=0, embedding_dim=4)
    emb, labels = inputs()
    assert torch.isnan(loss(emb.detach() * math.nan, labels))


def test_triplet_losses_need_three_equal_parts() -> None:
    loss = get_loss("triplet", num_classes=0, embedding_dim=4)
    emb, labels = inputs(n=4)
    with pytest.raises(ValueError, match=r"\[anchors; positives; negatives\], got 4 rows"):
        loss(emb, labels)


def test_the_third_party_helper_catches_a_loss_whose_centres_get_no_gradient() -> None:
    class Frozen(Loss):
        name = "frozen"
        description = "holds a parameter it never uses"
        needs = "labels"

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.centres = torch.nn.Parameter(torch.zeros(self.num_classes, self.embedding_dim))

        def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
            return embeddings.pow(2).sum()

    with pytest.raises(AssertionError, match="parameter centres gets no gradient"):
        check_loss(Frozen)


@pytest.mark.extras
def test_loss_settings_are_validated_by_the_plugin() -> None:
    with pytest.raises(ConfigError, match=r"loss\.scael: unknown key \(loss 'arcface'\)"):
        get_loss("arcface", {"scael": 30}, num_classes=3, embedding_dim=4)
    with pytest.raises(ConfigError, match=r"loss\.margin: .*less than"):
        get_loss("cosface", {"margin": 2.0}, num_classes=3, embedding_dim=4)
    with pytest.raises(ConfigError, match=r"loss\.scale: unknown key \(loss 'triplet'\)"):
        get_loss("triplet", {"scale": 1.0}, num_classes=3, embedding_dim=4)
    with pytest.raises(PluginError, match=r"unknown loss .arcfase.; available: .*arcface"):
        get_loss("arcfase", num_classes=3, embedding_dim=4)


def test_config_takes_a_name_or_a_table(tmp_path) -> None:
    assert TrainConfig().loss.name == "triplet" and TrainConfig().loss.settings == {}
    assert load_config(TrainConfig, None, [("loss", "arcface")]).loss.name == "arcface"
    path = tmp_path / "train.toml"
    path.write_text('[loss]\nname = "cosface"\nscale = 30.0\nmargin = 0.2\n')
    config = load_config(TrainConfig, path, [("loss.margin", 0.3)])
    assert (config.loss.name, config.loss.settings) == ("cosface", {"scale": 30.0, "margin": 0.3})
    again = TrainConfig.model_validate(config.model_dump(mode="json"))
    assert again.loss == config.loss
    path.write_text('loss = "arcface"\n')
    assert load_config(TrainConfig, path).loss.name == "arcface"
    with pytest.raises(ConfigError, match=r"loss\.name"):
        load_config(TrainConfig, None, [("loss.name", "")])


def test_a_loss_that_needs_an_unknown_feed_is_refused_with_its_name(tmp_path) -> None:
    source = """
from facetool.losses import Loss


class Pairs(Loss):
    name = "pairs"
    description = "asks for a feed the trainer does not have"
    needs = "pairs"

    def compute(self, embeddings, labels):
        return embeddings.sum()
"""
    with plugin_site(tmp_path / "site") as install:
        install("pairs-loss", {"facetool.losses": {"pairs": "pairs_loss:Pairs"}}, {"pairs_loss": source})
        with pytest.raises(
            PluginError, match="loss 'pairs': needs is 'pairs', not one of triplets, labels, groups"
        ):
            get_loss("pairs", num_classes=3, embedding_dim=4)


def test_a_loss_that_exits_while_it_is_built_is_its_plugin_error(tmp_path) -> None:
    source = """
import sys

from facetool.losses import Loss


class Leaves(Loss):
    name = "leaves"

    def __init__(self, *args, **kwargs):
        sys.exit(4)

    def compute(self, embeddings, labels):
        return embeddings.sum()
"""
    with plugin_site(tmp_path / "site") as install:
        install("leaves-loss", {"facetool.losses": {"leaves": "leaves_loss:Leaves"}}, {"leaves_loss": source})
        with pytest.raises(
            PluginError, match=r"loss 'leaves' could not be created: the plugin called sys.exit\(4\)"
        ):
            get_loss("leaves", num_classes=3, embedding_dim=4)


@pytest.mark.extras
def test_a_nan_the_users_setting_causes_names_the_key_and_value() -> None:
    loss = get_loss("arcface", {"scale": 1e300, "margin": 0.3}, num_classes=3, embedding_dim=4)
    with pytest.raises(ConfigError, match=r"^loss\.scale = 1e\+300 \(your value in the \[loss\] table\): loss "
                       r"'arcface' returns nan for finite embeddings .*default \(64\.0\)"):  # fmt: skip
        loss(*inputs())
    assert torch.isfinite(get_loss("arcface", {"margin": 0.3}, num_classes=3, embedding_dim=4)(*inputs()))
