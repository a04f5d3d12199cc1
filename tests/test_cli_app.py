"""The command itself: help lists every command, errors end in one line with the right exit code."""

import json
from pathlib import Path


def test_help_lists_every_command(facetool_cli):
    result = facetool_cli("--help")
    assert result.returncode == 0
    for command in ("detect", "dataset", "train", "eval", "embed", "plugins", "demo", "plot"):
        assert command in result.stdout


def test_unknown_command_is_a_usage_error(facetool_cli):
    result = facetool_cli("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_config_error_is_one_line_with_exit_code_2(facetool_cli, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("no_such_setting = 1\n")
    result = facetool_cli("train", "--config", str(config), "--print-config")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no_such_setting" in lines[0] and "train.toml" in lines[0]


def test_verbose_shows_the_traceback(facetool_cli, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("no_such_setting = 1\n")
    result = facetool_cli("train", "--config", str(config), "--print-config", "--verbose")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_version_prints_the_installed_version(facetool_cli):
    import facetool

    result = facetool_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"facetool {facetool.__version__}"


def test_info_reports_versions_devices_detector_and_plugins(facetool_cli, ssd_dir):
    import torch

    from facetool.detection.model_files import resolve_model_files

    result = facetool_cli("info", "--json", env={"FACETOOL_MODELS": str(ssd_dir)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["torch"] == torch.__version__.split("+")[0]
    assert report["devices"][0]["device"] == "cpu"
    assert len(report["devices"]) == 1 + (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    expected = resolve_model_files(env={"FACETOOL_MODELS": str(ssd_dir)})
    assert report["detector"]["found"]["weights"] == str(expected.weights)
    assert report["detector"]["found"]["source"].startswith("$FACETOOL_MODELS")
    assert [p["place"] for p in report["detector"]["search_order"]][:2] == ["$FACETOOL_MODELS", "user cache"]
    assert {"semihard", "inception_resnet_v1"} <= {p["name"] for p in report["plugins"]}
    table = facetool_cli("info", env={"FACETOOL_MODELS": str(ssd_dir)})
    assert table.returncode == 0 and "detector search order" in table.stdout


def test_protocol_help_keeps_bracketed_words(facetool_cli):
    result = facetool_cli("protocol", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "with a [train] table holding the training recipe" in text
    assert "protocol settings and [train]." in text


def test_root_verbose_option_receives_its_value():
    from typer.testing import CliRunner

    from facetool.cli import app as cli_app

    runner = CliRunner()
    assert runner.invoke(cli_app.app, ["--verbose", "plugins", "list", "--json"]).exit_code == 0
    assert cli_app._State.verbose is True
    assert runner.invoke(cli_app.app, ["plugins", "list", "--json"]).exit_code == 0
    assert cli_app._State.verbose is False


def test_the_cli_imports_no_private_typer_or_click_module():
    import ast

    for path in sorted((Path(__file__).parents[1] / "facetool" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("typer._", "click")), f"{path.name} imports {name}"


def test_user_paths_are_printed_literally(lfw_dir, tmp_path):
    """Paths went through rich markup: `[/]` raised a MarkupError ("internal error") and `[final]` vanished."""
    from cli_helpers import facetool_in_process

    data = tmp_path / "x[" / "]Wedding [final]"
    (data / "Someone").mkdir(parents=True)
    (data / "Someone" / "a.jpg").symlink_to(next((lfw_dir / "Aaron_Peirsol").glob("*.jpg")))
    result = facetool_in_process("dataset", "stats", data)
    assert result.returncode == 0, result.stderr
    squeezed = "".join(result.stdout.split())  # the title wraps at the table's width
    assert "".join(f"directory {data}".split()) in squeezed, result.stdout
