"""DetectConfig from TOML (a [detect] table or top-level keys), options and --set, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from detect_helpers import run_cli

from facetool.config.base import build_config
from facetool.config.detect import DetectConfig
from facetool.errors import ConfigError


def test_defaults():
    config = DetectConfig()
    assert (config.threshold, config.select, config.margin, config.image_size, config.encoding) == (
        0.5,
        "largest",
        0.2,
        160,
        "jpeg",
    )
    assert config.model_format == "auto" and config.workers is None


def test_section_then_options_then_set(tmp_path: Path):
    path = tmp_path / "all.toml"
    path.write_text('[train]\nepochs = 3\n[detect]\nthreshold = 0.7\nselect = "center"\nmargin = 16\n')
    config = build_config(
        DetectConfig,
        path,
        ["image_size=96", "select=score"],
        {"threshold": 0.6, "workers": None},
        section="detect",
    )
    assert (config.threshold, config.select, config.margin, config.image_size) == (0.6, "score", 16, 96)


def test_top_level_keys(tmp_path: Path):
    path = tmp_path / "detect.toml"
    path.write_text('encoding = "raw"\nmodel_format = "caffe"\nmodel_dir = "/models"\n')
    config = build_config(DetectConfig, path, section="detect")
    assert (config.encoding, config.model_format, config.model_dir) == ("raw", "caffe", Path("/models"))


def test_errors_name_file_and_key(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("[detect]\nthreshold = 1.5\nspeed = 3\n")
    with pytest.raises(ConfigError) as err:
        build_config(DetectConfig, path, section="detect")
    assert (
        str(path) in str(err.value)
        and "threshold" in str(err.value)
        and "speed: unknown key" in str(err.value)
    )
    with pytest.raises(ConfigError, match="command line: select"):
        build_config(DetectConfig, None, None, {"select": "biggest"}, section="detect")


def test_cli_usage_errors_exit_2_in_one_line(tmp_path: Path):
    (tmp_path / "data" / "x").mkdir(parents=True)
    result = run_cli("detect", tmp_path / "data", "-o", tmp_path / "f.h5", "--margin", "-1", "--no-progress")
    assert result.returncode == 2 and "margin" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("detect", tmp_path / "data", "-o", tmp_path / "f.h5", "--no-progress")
    assert result.returncode == 1 and "no images found" in result.stderr
    assert not (tmp_path / "f.h5").exists()
