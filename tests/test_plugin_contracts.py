"""Every installed plugin keeps its kind's contract, as timm tests every registered model: one parametrized
check per name (aliases included), with the helpers a third-party author runs on their own plugin
(`check_loss`, `check_miner`, `check_backbone`), and the one shape every kind shares (a `Settings` model,
a `[kind]` table, aliases that build what their old name built)."""

from __future__ import annotations

import json

import pytest
import torch
from plugin_helpers import Install, plugin_site

from facetool.config.base import NoSettings, load_config
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, PluginError
from facetool.losses.testing import check_loss
from facetool.miners import get_miner
from facetool.miners.testing import check_miner
from facetool.models import build_backbone
from facetool.models.backbone import same_backbone
from facetool.models.testing import check_backbone
from facetool.plugins import BACKBONES, LOSSES, MINERS, PluginAlias, available, list_plugins


def ok(group: str) -> list[str]:
    """The names of `group` that load (a broken or clashing plugin has its own tests)."""
    return [row.name for row in list_plugins(group) if row.status == "ok"]


@pytest.mark.parametrize("name", ok(MINERS))
def test_every_installed_miner_keeps_the_contract(name: str) -> None:
    check_miner(name)


HEAVY_BACKBONES = {"inception_resnet_v1"}  # 28M parameters: tens of seconds on 2 shared cores


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_BACKBONES else n for n in ok(BACKBONES)]
)
def test_every_installed_backbone_keeps_the_contract(name: str) -> None:
    check_backbone(name)


@pytest.mark.parametrize("name", ok(LOSSES))
def test_every_installed_loss_keeps_the_contract(name: str) -> None:
    check_loss(name)


def test_the_builtins_are_among_the_checked() -> None:
    assert {"semihard", "hard", "random", "semihard-strict"} <= set(ok(MINERS))
    assert "inception_resnet_v1" in ok(BACKBONES) and "triplet" in ok(LOSSES)


TABLES = """
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F
from facetool.miners import Miner
from facetool.miners.base import anchor_positive_pairs
from facetool.plugins import PluginAlias


class StrideSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stride: int = Field(1, ge=1)


class Stride(Miner):
    "Every stride-th pair, its negative the next person's first image."
    Settings = StrideSettings

    def mine(self, embeddings, labels, margin, generator):
        pairs = anchor_positive_pairs(labels)
        a, p = pairs.anchors[:: self.settings.stride], pairs.positives[:: self.settings.stride]
        first = {int(v): i for i, v in reversed(list(enumerate(labels.tolist())))}
        people = sorted(first)
        if len(people) < 2:
            return a[:0], p[:0], a[:0]
        n = torch.tensor([first[people[(people.index(int(labels[i])) + 1) % len(people)]] for i in a.tolist()],
                         dtype=torch.long)
        return a, p, n


class WidthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(4, ge=1)


class Linear(nn.Module):
    "Mean colour through a linear layer of `width` units."
    Settings = WidthSettings

    def __init__(self, settings, *, embedding_dim, dropout, pretrained, image_size):
        super().__init__()
        self.body = nn.Linear(3, settings.width)
        self.head = nn.Linear(settings.width, embedding_dim)

    def forward(self, x):
        return F.normalize(self.head(self.body(x.mean(dim=(2, 3)))), dim=1)


WIDE = PluginAlias("linear", {"width": 16})
WIDER = PluginAlias("wide", {"width": 32})
"""


@pytest.fixture
def tables(tmp_path) -> Install:
    with plugin_site(tmp_path / "site") as install:
        install(
            "table-plugins",
            {
                "facetool.miners": {"stride": "tables:Stride"},
                "facetool.backbones": {
                    "linear": "tables:Linear",
                    "wide": "tables:WIDE",
                    "wider": "tables:WIDER",
                },
            },
            {"tables": TABLES},
        )
        yield install


def test_a_third_party_miner_and_backbone_with_settings_keep_the_contract(tables: Install) -> None:
    assert check_miner("stride", {"stride": 2}).settings.stride == 2
    check_backbone("linear", {"width": 3})
    check_backbone("wide")


def test_miner_and_backbone_tables_reach_their_plugins(tables: Install, tmp_path) -> None:
    path = tmp_path / "train.toml"
    path.write_text('[miner]\nname = "stride"\nstride = 3\n\n[backbone]\nname = "linear"\nwidth = 5\n')
    config = load_config(TrainConfig, path, [("miner_stages", [{"epoch": 2, "miner": "hard"}])])
    assert (config.miner.name, config.miner.settings, config.miner.label) == (
        "stride",
        {"stride": 3},
        "stride(stride=3)",
    )
    assert config.miner_stages[0].miner.name == "hard"
    miner = get_miner(config.miner.name, config.miner.settings)
    assert miner.settings.stride == 3
    model = build_backbone(config.backbone.name, config.backbone.settings, embedding_dim=8, image_size=32)
    assert model.body.out_features == 5
    with pytest.raises(
        ConfigError, match=r"^miner.stride: Input should be greater than or equal to 1 \(miner 'stride'\)$"
    ):
        get_miner("stride", {"stride": 0})
    with pytest.raises(ConfigError, match=r"^backbone.depth: unknown key \(backbone 'linear'\)$"):
        build_backbone("linear", {"depth": 2}, embedding_dim=8, image_size=32)
    with pytest.raises(ConfigError, match=r"^miner.stride: unknown key \(miner 'semihard'\)$"):
        get_miner("semihard", {"stride": 2})
    assert isinstance(get_miner("semihard").settings, NoSettings)


def test_an_alias_builds_its_target_with_its_settings_and_the_users_win(tables: Install) -> None:
    assert build_backbone("wide", embedding_dim=8, image_size=32).body.out_features == 16
    assert build_backbone("wide", {"width": 2}, embedding_dim=8, image_size=32).body.out_features == 2
    entry = {"name": "wide", "embedding_dim": 8, "image_size": 32}
    assert same_backbone(entry, {**entry, "name": "linear", "settings": {"width": 16}})
    assert not same_backbone(entry, {**entry, "name": "linear"})
    with pytest.raises(PluginError, match="backbone 'wider' is an alias of 'wide', itself an alias"):
        build_backbone("wider", embedding_dim=8, image_size=32)
    (row,) = [r for r in list_plugins(BACKBONES) if r.name == "wide"]
    assert row.description == "alias of linear with width = 16" and row.status == "ok"


def test_an_alias_is_a_plugin_alias_object() -> None:
    assert PluginAlias("x", {"a": 1}).description == "alias of x with a = 1"
    assert "inception_resnet_v1" in available(BACKBONES)


def test_a_backbone_table_is_checked_before_any_work(tables: Install) -> None:
    from facetool.training.recipe import check_plugins

    config = TrainConfig.model_validate({"backbone": {"name": "linear", "width": 0}})
    with pytest.raises(ConfigError, match=r"^train\.backbone\.width: .*\(backbone 'linear'\)$"):
        check_plugins(config, "train.")
    config = TrainConfig.model_validate(
        {"miner_stages": [{"epoch": 3, "miner": {"name": "stride", "stride": 0}}]}
    )
    with pytest.raises(ConfigError, match=r"^miner_stages\.0\.miner\.stride: .*\(miner 'stride'\)$"):
        check_plugins(config)


def test_a_checked_backbone_output_is_torch(tables: Install) -> None:
    out = check_backbone("linear")(torch.zeros(1, 3, 80, 80))
    assert out.shape == (1, 8)


def write_checkpoint(path, model: torch.nn.Module, backbone: dict) -> None:
    from facetool.models.checkpoint import make_checkpoint, save_checkpoint

    config = TrainConfig(backbone={"name": backbone["name"], **backbone.get("settings", {})}).model_dump(
        mode="json"
    )
    save_checkpoint(
        make_checkpoint(model=model.state_dict(), backbone=backbone, config=config, epoch=1, history=[]), path
    )


def test_checkpoints_and_cards_keep_the_backbone_settings_and_old_names_load(
    tables: Install, tmp_path
) -> None:
    """A checkpoint naming an alias without settings (as every checkpoint before settings did) loads as the
    alias's network; a checkpoint with settings exports a card that records them, and the card loads again."""
    from facetool.models import load_embedding_model
    from facetool.models.export import export_model

    torch.manual_seed(0)
    model = build_backbone("linear", {"width": 16}, embedding_dim=8, image_size=32).eval()
    faces = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(faces)
    sizes = {"embedding_dim": 8, "dropout": 0.0, "image_size": 32}
    old, new = tmp_path / "old.pth", tmp_path / "new.pth"
    write_checkpoint(old, model, {"name": "wide", **sizes})
    write_checkpoint(new, model, {"name": "linear", "settings": {"width": 16}, **sizes})
    for path in (old, new):
        loaded, info = load_embedding_model(path)
        with torch.no_grad():
            assert torch.equal(loaded(faces), expected), path.name
    assert info.backbone_settings == {"width": 16}
    out = tmp_path / "model.safetensors"
    export_model(new, out)
    card = json.loads((tmp_path / "model.safetensors.json").read_text())
    assert card["backbone"] == {
        "name": "linear",
        "settings": {"width": 16},
        "embedding_dim": 8,
        "image_size": 32,
    }
    loaded, info = load_embedding_model(out)
    with torch.no_grad():
        assert torch.equal(loaded(faces), expected)
    bad = tmp_path / "bad.pth"
    write_checkpoint(bad, model, {"name": "linear", "settings": {"width": 0}, **sizes})
    from facetool.errors import ModelFileError

    with pytest.raises(ModelFileError, match=r"bad.pth: checkpoint backbone settings: backbone.width: "):
        load_embedding_model(bad)
