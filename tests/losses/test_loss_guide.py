"""The plugin guide's examples as a reader copies them: docs/plugins.md's Python API lines, its NormFace loss
installed under its documented entry point, its `check_loss` test, its quoted error, and training with it."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from plugin_helpers import plugin_site
from train_helpers import small_train_command

from facetool.errors import ConfigError
from facetool.losses import get_loss
from facetool.models.checkpoint import load_checkpoint
from facetool.plugins import list_plugins

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def guide_block(language: str, marker: str) -> str:
    """The one fenced `language` block of the guide that contains `marker`, dedented."""
    fences = re.findall(rf"^( *)```{language}\n(.*?)^\1```", GUIDE.read_text(), re.M | re.S)
    found = [textwrap.dedent(body) for _, body in fences if marker in body]
    assert len(found) == 1, f"{len(found)} {language} blocks of {GUIDE.name} contain {marker!r}"
    return found[0]


@pytest.fixture
def guide_package(tmp_path: Path) -> Iterator[Path]:
    """The guide's pyproject (name, losses entry point) and NormFace code installed as a package under a site folder."""
    project = tomllib.loads(guide_block("toml", '[project.entry-points."facetool.losses"]'))["project"]
    entry = project["entry-points"]["facetool.losses"]
    assert list(entry) == ["normface"]
    module = entry["normface"].split(":")[0].split(".")
    site = tmp_path / "site"
    package = site.joinpath(*module[:-1])
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / f"{module[-1]}.py").write_text(guide_block("python", "class NormFace(Loss)"))
    with plugin_site(site) as install:
        install(project["name"], {"facetool.losses": entry}, {})
        yield site


def test_the_python_api_lines_run_as_written() -> None:
    names: dict = {}
    exec(guide_block("python", 'get_miner("semihard"'), names)
    assert names["miner"].name == "semihard"
    model = names["model"].eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 160, 160))
    assert out.shape == (2, 128)


def test_the_loss_example_is_listed_and_passes_its_own_contract_test(guide_package: Path) -> None:
    (row,) = [r for r in list_plugins("facetool.losses") if r.name == "normface"]
    assert (row.package, row.status) == ("my-facetool-plugin", "ok")
    assert row.description == "softmax over scaled cosines to class centres"
    names: dict = {}
    exec(guide_block("python", "def test_normface_keeps_the_loss_contract"), names)
    names["test_normface_keeps_the_loss_contract"]()


def test_a_misspelt_setting_gets_the_error_the_guide_quotes(guide_package: Path) -> None:
    (quoted,) = re.findall(r"misspelt\s+key is `([^`]+)`", GUIDE.read_text())
    with pytest.raises(ConfigError) as error:
        get_loss("normface", {"scael": 16.0}, num_classes=3, embedding_dim=4)
    assert quoted in str(error.value)


def test_training_with_the_example_loss_through_the_cli_lowers_it(
    guide_package: Path, people_cache: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    no_augment = {f"augment.{name}": "false" for name in ("random_crop", "flip", "color_jitter")}
    command = small_train_command(
        people_cache, run_dir, "--num-epochs", "4", "--people-per-batch", "8",
        settings={"loss": "normface", "epoch_size": "5", "learning_rate": "0.003", "dropout_prob": "0.0", **no_augment},
    )  # fmt: skip
    path = os.pathsep.join(p for p in (str(guide_package), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ck = load_checkpoint(run_dir / "last.pth")
    losses = [r["train_loss"] for r in ck["history"]]
    assert sum(losses[-2:]) < 0.9 * sum(losses[:2]), losses
    assert ck["config"]["loss"] == {"name": "normface"}
    assert ck["loss"]["centres"].shape == (8, 16)
    assert "labelled batches (no mining)" in (run_dir / "train.log").read_text()
