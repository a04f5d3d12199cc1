"""The command itself: help lists every command, errors end in one line with the right exit code."""


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
