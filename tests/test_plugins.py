"""Plugin discovery through entry points: built-ins, the facetool-extras package, broken plugins, name clashes.

Third-party plugins are simulated by real distributions on disk (tests/plugin_helpers.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import facetool_in_process
from plugin_helpers import Install, make_distribution, plugin_site

import facetool
from facetool import plugins
from facetool.errors import ModelFileError, PluginError
from facetool.miners import get_miner
from facetool.models import build_backbone


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    """Install throwaway distributions for this test only."""
    with plugin_site(tmp_path / "site") as install:
        yield install


BAD_BACKBONES = """
import torch
from torch import nn

class Raw(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(3, dim)
    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3))) * 3

def unnormalised(settings, *, embedding_dim, dropout, pretrained, image_size):
    "Forgets the L2 norm."
    return Raw(embedding_dim)

def wrong_size(settings, *, embedding_dim, dropout, pretrained, image_size):
    "Ignores embedding_dim."
    return nn.Sequential(Raw(7), nn.Flatten())

def not_a_module(settings, *, embedding_dim, dropout, pretrained, image_size):
    return "a string"
"""

LIAR_MINER = """
import torch
from facetool.miners import Miner

class Liar(Miner):
    "Returns a negative of the anchor's own identity."
    def mine(self, embeddings, labels, margin, generator):
        return torch.tensor([0]), torch.tensor([1]), torch.tensor([1])

class NotAMiner:
    pass
"""


def rows_by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_built_ins_and_extras_are_discovered() -> None:
    rows = {(r.kind, r.name): r for r in plugins.list_plugins()}
    for name in ("semihard", "semihard-strict", "hard", "random"):
        row = rows[("miner", name)]
        assert (row.package, row.version, row.status) == ("facetool", facetool.__version__, "ok")
        assert row.description
    assert (
        rows[("backbone", "inception_resnet_v1")].target
        == "facetool.models.inception:build_inception_resnet_v1"
    )
    assert rows[("backbone", "test-cnn")].package == "facetool-test-backbones"
    if importlib.util.find_spec("facetool_extras") is not None:
        assert rows[("miner", "distance-weighted")].package == "facetool-extras"
        assert rows[("backbone", "tiny-cnn")].package == "facetool-extras"


def test_built_in_table_is_the_pyproject_entry_points_and_resolves_without_metadata(tmp_path: Path) -> None:
    import tomllib

    root = Path(facetool.__file__).parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]
    assert {g: dict(v) for g, v in declared.items() if g in plugins.GROUPS} == plugins.BUILTINS
    code = (
        "import importlib.metadata as m, sys\n"
        "assert not [d for d in m.distributions() if d.metadata['Name'] == 'facetool']\n"
        "from facetool import plugins\n"
        "rows = plugins.list_plugins()\n"
        "print(sorted((r.kind, r.name, r.package, r.status) for r in rows))\n"
    )
    # the package alone on PYTHONPATH (a link to it: the checkout may hold an egg-info beside it), site off
    (tmp_path / "facetool").symlink_to(root / "facetool")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    listed = {(kind, name) for kind, name, package, status in eval(out.stdout) if package == "facetool"}
    expected = {(plugins.GROUPS[g], name) for g, names in plugins.BUILTINS.items() for name in names}
    assert listed == expected


def test_unknown_names_list_the_available_ones() -> None:
    with pytest.raises(PluginError, match=r"unknown miner 'semi_hard'; available: .*hard, random, semihard"):
        get_miner("semi_hard")
    with pytest.raises(PluginError, match=r"unknown backbone 'resnet'; available: .*inception_resnet_v1"):
        build_backbone("resnet")


def test_discovery_is_cached_until_cleared(tmp_path: Path) -> None:
    root = tmp_path / "late"
    make_distribution(root, "late-plugin", {"facetool.miners": {"late": "late_mod:Late"}}, {"late_mod": ""})
    plugins.available(plugins.MINERS)
    sys.path.insert(0, str(root))
    try:
        assert "late" not in plugins.available(plugins.MINERS)
        plugins.clear_cache()
        assert "late" in plugins.available(plugins.MINERS)
    finally:
        sys.path.remove(str(root))
        plugins.clear_cache()


def test_name_clash_names_both_packages(install: Install) -> None:
    install(
        "clashy-miners", {"facetool.miners": {"semihard": "clashy_mod:Other"}}, {"clashy_mod": LIAR_MINER}
    )
    with pytest.raises(
        PluginError, match=r"miner 'semihard' is registered by more than one package: .*"
    ) as err:
        get_miner("semihard")
    assert f"facetool {facetool.__version__} (facetool.miners.semihard:SemiHardMiner)" in str(err.value)
    assert "clashy-miners 1.0" in str(err.value)
    status = {r.package: r.status for r in plugins.list_plugins(plugins.MINERS) if r.name == "semihard"}
    assert status == {"facetool": "clash", "clashy-miners": "clash"}
    assert get_miner("hard").plugin_name == "hard"


def test_broken_plugin_is_reported_and_the_rest_works(install: Install) -> None:
    install(
        "broken-plugin",
        {"facetool.miners": {"kaput": "kaput_mod:Miner"}},
        {"kaput_mod": "raise ImportError('needs libfoo 3')\n"},
    )
    with pytest.raises(PluginError, match=r"miner 'kaput' from broken-plugin 1.0 failed to load .*libfoo 3"):
        get_miner("kaput")
    kaput = [r for r in plugins.list_plugins() if r.name == "kaput"]
    assert kaput[0].status == "broken" and "libfoo 3" in (kaput[0].error or "")
    assert get_miner("semihard")(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), 0.2).num_pairs == 2


def test_a_lying_miner_plugin_is_rejected_with_its_name(install: Install) -> None:
    install(
        "liar-plugin",
        {"facetool.miners": {"liar": "liar_mod:Liar", "imposter": "liar_mod:NotAMiner"}},
        {"liar_mod": LIAR_MINER},
    )
    liar = get_miner("liar")
    with pytest.raises(
        PluginError, match="miner 'liar' broke its contract: a negative has the anchor's label"
    ):
        liar(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), 0.2)
    with pytest.raises(
        PluginError, match=r"miner 'imposter': entry point gives .* not a facetool\.miners\.Miner"
    ):
        get_miner("imposter")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("unnormalised", "output rows must be L2-normalised"),
        ("wrong-size", r"output \(2, 7\), expected \(2, 16\)"),
        ("not-a-module", "factory returned str, not a torch.nn.Module"),
    ],
)
def test_bad_backbone_plugins_are_rejected_with_their_name(install: Install, name: str, why: str) -> None:
    entries = {
        n: f"bad_backbones:{n.replace('-', '_')}" for n in ("unnormalised", "wrong-size", "not-a-module")
    }
    install("bad-backbones", {"facetool.backbones": entries}, {"bad_backbones": BAD_BACKBONES})
    with pytest.raises(PluginError, match=f"backbone '{name}'.*{why}"):
        build_backbone(name, embedding_dim=16, image_size=32)


def run_facetool(args: list[str], extra_path: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(extra_path), os.environ.get("PYTHONPATH")])),
    }
    env.update(COLUMNS=str(columns), OMP_NUM_THREADS="1")
    exe = Path(sys.executable).with_name("facetool")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder holding a broken plugin and one that clashes with a built-in name."""
    root = tmp_path_factory.mktemp("site")
    make_distribution(
        root,
        "broken-plugin",
        {"facetool.miners": {"kaput": "kaput_mod:Miner"}},
        {"kaput_mod": "import no_such_module_anywhere\n"},
    )
    make_distribution(
        root,
        "clashy-backbones",
        {"facetool.backbones": {"inception_resnet_v1": "clashy_bb:build"}},
        {"clashy_bb": "def build(**kw):\n    'Another inception.'\n"},
    )
    return root


def test_cli_lists_broken_and_clashing_plugins_as_json(bad_site: Path) -> None:
    done = run_facetool(["plugins", "list", "--json"], bad_site)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    kaput = rows_by_name(rows)["kaput"]
    assert kaput["status"] == "broken" and "no_such_module_anywhere" in kaput["error"]
    assert kaput["package"] == "broken-plugin" and kaput["version"] == "1.0"
    clash = [r for r in rows if r["name"] == "inception_resnet_v1"]
    assert {r["package"] for r in clash} == {"facetool", "clashy-backbones"}
    assert all(r["status"] == "clash" for r in clash)
    assert rows_by_name(rows)["semihard"]["status"] == "ok"


def test_cli_table_shows_the_broken_plugin(bad_site: Path) -> None:
    done = run_facetool(["plugins", "list"], bad_site)
    assert done.returncode == 0, done.stderr
    kaput = next(line for line in done.stdout.splitlines() if "kaput" in line)
    assert "broken-plugin" in kaput and "broken" in kaput
    assert "semihard-strict" in done.stdout and "facetool-test-backbones" in done.stdout


# --- issue 13: a plugin's exit or exception is that plugin's error; its text is printed literally -------------

EXITS_AT_IMPORT = "import sys\nsys.exit(0)\n"

MARKUP_MINER = """
import torch
from facetool.miners import Miner

class Markup(Miner):
    "Closes [/] a tag it never opened and asks for [bold red]colour[/bold red]."
    def mine(self, embeddings, labels, margin, generator):
        raise SystemExit(3)
"""


def test_a_plugin_calling_sys_exit_at_import_is_that_plugins_error(install: Install) -> None:
    install(
        "exiting-plugin", {"facetool.miners": {"exiter": "exiter_mod:Miner"}}, {"exiter_mod": EXITS_AT_IMPORT}
    )
    with pytest.raises(PluginError, match=r"miner 'exiter' from exiting-plugin 1.0 .*called sys.exit\(0\)"):
        get_miner("exiter")
    row = next(r for r in plugins.list_plugins() if r.name == "exiter")
    assert row.status == "broken" and "sys.exit(0)" in (row.error or "")
    assert get_miner("hard").plugin_name == "hard"


def test_a_miner_calling_sys_exit_while_mining_is_that_miners_error(install: Install) -> None:
    install(
        "markup-plugin", {"facetool.miners": {"markup": "markup_mod:Markup"}}, {"markup_mod": MARKUP_MINER}
    )
    with pytest.raises(PluginError, match=r"miner 'markup' failed: the plugin called sys.exit\(3\)"):
        get_miner("markup")(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), 0.2)


def test_a_package_qualified_name_resolves_a_clash(install: Install) -> None:
    install("clashy-miners", {"facetool.miners": {"semihard": "clashy_mod:Liar"}}, {"clashy_mod": LIAR_MINER})
    with pytest.raises(PluginError, match=r"; name one of them as '.*:semihard' or '.*:semihard'$") as err:
        get_miner("semihard")
    assert "'facetool:semihard'" in str(err.value) and "'clashy-miners:semihard'" in str(err.value)
    assert type(get_miner("facetool:semihard")).__name__ == "SemiHardMiner"
    assert type(get_miner("clashy-miners:semihard")).__name__ == "Liar"
    assert type(get_miner("Clashy_Miners:semihard")).__name__ == "Liar"  # names compare the packaging way
    with pytest.raises(PluginError, match=r"package 'nobody' registers no miner 'semihard'; registered: .*"):
        get_miner("nobody:semihard")
    rows = {r.package: r for r in plugins.list_plugins(plugins.MINERS, pattern="semihard")}
    assert {p: r.status for p, r in rows.items()} == {"facetool": "clash", "clashy-miners": "clash"}
    assert rows["clashy-miners"].as_dict()["qualified_name"] == "clashy-miners:semihard"
    assert rows["clashy-miners"].description == "Returns a negative of the anchor's own identity."


def test_groups_are_data_a_loss_plugin_is_found_like_the_others(install: Install) -> None:
    install(
        "loss-plugin",
        {"facetool.losses": {"contrastive": "loss_mod:contrastive"}},
        {"loss_mod": "def contrastive():\n    'Pulls pairs together.'\n    return 1\n"},
    )
    assert "contrastive" in plugins.available(plugins.LOSSES)
    assert plugins.load_plugin(plugins.LOSSES, "loss-plugin:contrastive")() == 1
    (row,) = plugins.list_plugins(plugins.LOSSES, package="loss-plugin")
    assert (row.kind, row.package, row.description, row.status) == (
        "loss",
        "loss-plugin",
        "Pulls pairs together.",
        "ok",
    )
    with pytest.raises(PluginError, match=r"unknown loss 'contrastiv'; available: .*contrastive"):
        plugins.load_plugin(plugins.LOSSES, "contrastiv")


def test_listings_filter_by_pattern_package_and_group() -> None:
    names = {r.name for r in plugins.list_plugins(pattern="semi*")}
    assert names == {"semihard", "semihard-strict"}
    packages = {r.package for r in plugins.list_plugins(package="Facetool_Test.Backbones")}
    assert packages == {"facetool-test-backbones"}
    assert {r.kind for r in plugins.list_plugins(plugins.BACKBONES)} == {"backbone"}


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder with a plugin that exits at import and one whose description is rich markup."""
    root = tmp_path_factory.mktemp("hostile-site")
    make_distribution(
        root,
        "exiting-plugin",
        {"facetool.miners": {"exiter": "exiter_mod:Miner"}},
        {"exiter_mod": EXITS_AT_IMPORT},
    )
    make_distribution(
        root,
        "markup-plugin",
        {"facetool.miners": {"markup": "markup_mod:Markup"}},
        {"markup_mod": MARKUP_MINER},
    )
    return root


def test_cli_lists_despite_an_exiting_plugin_and_prints_markup_literally(hostile_site: Path) -> None:
    done = run_facetool(["plugins", "list"], hostile_site)
    assert done.returncode == 0, done.stderr
    assert "Closes [/] a tag it never opened and asks for [bold red]colour[/bold red]." in done.stdout
    exiter = next(line for line in done.stdout.splitlines() if "exiter" in line)
    assert "broken" in exiter and "sys.exit(0)" in done.stdout
    assert "semihard-strict" in done.stdout


def test_train_with_a_miner_that_exits_at_import_fails_naming_it(
    hostile_site: Path, tmp_path: Path, lfw_dir: Path
) -> None:
    from cache_helpers import some_identities, write_people_cache

    cache = write_people_cache(lfw_dir, tmp_path / "faces.h5", some_identities(lfw_dir, 3, 2), 2, 64)
    done = run_facetool(
        [
            "train",
            "--data",
            str(cache),
            "--set",
            "miner=exiter",
            "--checkpoint-dir",
            str(tmp_path / "run"),
        ],
        hostile_site,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "miner 'exiter' from exiting-plugin 1.0" in lines[0] and "sys.exit(0)" in lines[0]
    assert not (tmp_path / "run" / "last.pth").exists()


def test_cli_table_wraps_descriptions_at_80_columns(bad_site: Path) -> None:
    listed = json.loads(run_facetool(["plugins", "list", "--json"], bad_site).stdout)
    done = run_facetool(["plugins", "list"], bad_site, columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in done.stdout
    body = [line.split("│") for line in lines if line.count("│") == 5]
    column = "".join("".join(cells[4].split()) for cells in body)  # the description cells, top to bottom
    for row in listed:
        shown = row["error"] or row["description"]
        assert "".join(shown.split()) in column, shown


EXITING_CONSTRUCTORS = """
import sys
import torch
from torch import nn
from facetool.errors import ModelFileError
from facetool.miners import Miner

class ExitsWhenMade(Miner):
    def __init__(self, *args, **kwargs):
        sys.exit("no miner today")
    def mine(self, embeddings, labels, margin, generator):
        raise AssertionError("never mined")

class RaisesWhenMade(Miner):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("bad mood")
    def mine(self, embeddings, labels, margin, generator):
        raise AssertionError("never mined")

def exits_when_built(settings, *, embedding_dim, dropout, pretrained, image_size):
    sys.exit(4)

def raises_when_built(settings, *, embedding_dim, dropout, pretrained, image_size):
    raise ValueError("no such width")

def reports_a_missing_file(settings, *, embedding_dim, dropout, pretrained, image_size):
    raise ModelFileError(f"{pretrained}: weights file not found")

class ExitsInForward(nn.Module):
    def forward(self, x):
        sys.exit(5)

def exits_in_forward(settings, *, embedding_dim, dropout, pretrained, image_size):
    return ExitsInForward()
"""


@pytest.fixture
def exiting(install: Install) -> None:
    install(
        "exiting-constructors",
        {
            "facetool.miners": {
                "exits": "exiting_ctor:ExitsWhenMade",
                "raises": "exiting_ctor:RaisesWhenMade",
            },
            "facetool.backbones": {
                "exits-built": "exiting_ctor:exits_when_built",
                "raises-built": "exiting_ctor:raises_when_built",
                "missing-file": "exiting_ctor:reports_a_missing_file",
                "exits-forward": "exiting_ctor:exits_in_forward",
            },
        },
        {"exiting_ctor": EXITING_CONSTRUCTORS},
    )


def test_a_miner_that_exits_or_raises_when_made_is_that_miners_error(exiting: None) -> None:
    with pytest.raises(
        PluginError, match=r"miner 'exits' could not be created: .*sys.exit\('no miner today'\)"
    ):
        get_miner("exits")
    with pytest.raises(PluginError, match=r"miner 'raises' could not be created: RuntimeError: bad mood"):
        get_miner("raises")
    assert get_miner().plugin_name == "semihard"


def test_a_backbone_that_exits_or_raises_is_that_backbones_error(exiting: None) -> None:
    with pytest.raises(PluginError, match=r"backbone 'exits-built' could not be built: .*sys.exit\(4\)"):
        build_backbone("exits-built", embedding_dim=8, image_size=32)
    with pytest.raises(PluginError, match=r"backbone 'raises-built' could not be built: ValueError: no such"):
        build_backbone("raises-built", embedding_dim=8, image_size=32)
    with pytest.raises(
        PluginError, match=r"backbone 'exits-forward' failed on a \(2, 3, 32, 32\) batch: .*\(5\)"
    ):
        build_backbone("exits-forward", embedding_dim=8, image_size=32)
    with pytest.raises(ModelFileError, match=r"^w.pt: weights file not found$"):
        build_backbone("missing-file", embedding_dim=8, pretrained="w.pt", image_size=32)


def test_library_defaults_are_the_config_models() -> None:
    from facetool.config.base import field_default
    from facetool.config.train import TrainConfig
    from facetool.miners import DEFAULT_MINER

    assert TrainConfig().miner.name == DEFAULT_MINER
    defaults = TrainConfig()
    model = build_backbone().eval()
    assert type(model).__name__ == "InceptionResnetV1" and defaults.backbone.name == "inception_resnet_v1"
    with torch.no_grad():
        out = model(torch.zeros(1, 3, defaults.image_size, defaults.image_size))
    assert out.shape == (1, defaults.embedding_dim) == (1, field_default(TrainConfig, "embedding_dim"))


# --- issue 28: listing never fails; every plugin failure is one line naming the plugin ------------------------

RAISING_DESCRIPTION = """
class Meta(type):
    @property
    def description(cls):
        raise RuntimeError("no description,\\nnot even one")

class Miner(metaclass=Meta):
    "Never reached."
"""

RAISING_LOOKUP = """
class Anything:
    def __getattr__(self, name):
        raise RuntimeError(f"lookup of {name} failed")

thing = Anything()
"""

SKIPS_AT_IMPORT = """
import pytest
pytest.importorskip("no_such_module_anywhere_28")
"""

CHATTY = """
print("hello from the chatty plugin")

class Miner:
    "Talks when imported."
"""


def nameless_distribution(root: Path) -> None:
    """An installed distribution whose METADATA has no Name (nor Version)."""
    make_distribution(root, "nameless-plugin", {"facetool.miners": {"anonymous": "anon_mod:Miner"}},
                      {"anon_mod": "class Miner:\n    'Made by nobody.'\n"})  # fmt: skip
    (root / "nameless_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\n")


@pytest.fixture(scope="module")
def unruly_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unruly-site")
    for package, name, target, source in [
        ("raising-description", "raiser", "raiser_mod:Miner", RAISING_DESCRIPTION),
        ("raising-lookup", "lookup", "lookup_mod:thing", RAISING_LOOKUP),
        ("skipping-plugin", "skipper", "skipper_mod:Miner", SKIPS_AT_IMPORT),
        ("chatty-plugin", "chatty", "chatty_mod:Miner", CHATTY),
    ]:
        module = target.partition(":")[0]
        make_distribution(root, package, {"facetool.miners": {name: target}}, {module: source})
    nameless_distribution(root)
    return root


def test_a_plugin_whose_description_or_lookup_or_import_raises_is_one_broken_row(install: Install) -> None:
    install("raising-description", {"facetool.miners": {"raiser": "raiser_mod:Miner"}},
            {"raiser_mod": RAISING_DESCRIPTION})  # fmt: skip
    install(
        "raising-lookup", {"facetool.miners": {"lookup": "lookup_mod:thing"}}, {"lookup_mod": RAISING_LOOKUP}
    )
    install("base-exception-plugin", {"facetool.miners": {"based": "based_mod:Miner"}},
            {"based_mod": "class Stop(BaseException):\n    pass\nraise Stop('not an Exception')\n"})  # fmt: skip
    rows = {r.name: r for r in plugins.list_plugins(plugins.MINERS)}
    assert rows["raiser"].status == "broken"
    assert rows["raiser"].error == (
        "miner 'raiser' from raising-description 1.0: its description cannot be read: "
        "RuntimeError: no description, not even one"
    )
    assert rows["lookup"].status == "broken" and "lookup of description failed" in (
        rows["lookup"].error or ""
    )
    assert rows["based"].status == "broken"
    assert "'based' from base-exception-plugin 1.0 failed to load" in (rows["based"].error or "")
    assert "Stop: not an Exception" in (rows["based"].error or "")
    assert rows["semihard"].status == "ok"


def test_a_distribution_without_a_name_is_named_after_its_folder(install: Install, tmp_path: Path) -> None:
    nameless_distribution(tmp_path / "site")
    plugins.clear_cache()
    rows = plugins.list_plugins(plugins.MINERS, package="nameless-plugin")
    assert [(r.name, r.package, r.version, r.status) for r in rows] == [
        ("anonymous", "nameless_plugin", "?", "ok")
    ]
    assert rows[0].qualified_name == "nameless_plugin:anonymous"
    assert plugins.lookup(plugins.MINERS, "nameless-plugin:anonymous").value == "anon_mod:Miner"
    assert len(plugins.list_plugins(package="facetool")) > 4


def test_cli_listings_survive_unruly_plugins_and_stdout_stays_json(unruly_site: Path) -> None:
    listed = run_facetool(["plugins", "list", "--json"], unruly_site)
    assert listed.returncode == 0, listed.stderr
    rows = rows_by_name(json.loads(listed.stdout))
    assert "hello from the chatty plugin" in listed.stderr
    assert rows["chatty"]["status"] == "ok" and rows["chatty"]["description"] == "Talks when imported."
    for name, package in (("raiser", "raising-description"), ("lookup", "raising-lookup"),
                          ("skipper", "skipping-plugin")):  # fmt: skip
        assert rows[name]["status"] == "broken", rows[name]
        assert f"'{name}' from {package} 1.0" in rows[name]["error"] and "\n" not in rows[name]["error"]
    assert "Skipped: could not import 'no_such_module_anywhere_28'" in rows["skipper"]["error"]
    assert "Traceback" not in listed.stderr
    table = run_facetool(["plugins", "list"], unruly_site)
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    assert all(name in table.stdout for name in ("raiser", "lookup", "skipper", "chatty", "anonymous"))
    only = run_facetool(["plugins", "list", "--package", "nameless-plugin", "--json"], unruly_site)
    assert only.returncode == 0, only.stderr
    assert [r["qualified_name"] for r in json.loads(only.stdout)] == ["nameless_plugin:anonymous"]
    info = run_facetool(["info", "--json"], unruly_site)
    assert info.returncode == 0, info.stderr
    assert rows_by_name(json.loads(info.stdout)["plugins"])["raiser"]["status"] == "broken"
    info_table = run_facetool(["info"], unruly_site)
    assert info_table.returncode == 0 and "skipper" in info_table.stdout, info_table.stderr


def test_the_plugins_command_help_names_every_kind() -> None:
    """`facetool plugins --help` describes the group by the kinds it lists, every one of them."""
    shown = " ".join(facetool_in_process("plugins", "--help").stdout.split())
    missing = [kind for kind in plugins.GROUPS.values() if kind not in shown]
    assert not missing, f"facetool plugins --help does not name {missing}: {shown}"
