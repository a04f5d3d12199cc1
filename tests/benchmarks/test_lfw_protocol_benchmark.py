"""benchmarks/lfw_protocol.py end to end on a small real LFW folder: its report records recipe and result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lfw_mini import make_mini_lfw

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mini_lfw(tmp_path_factory, lfw_dir: Path, shared: Path) -> Path:
    return make_mini_lfw(tmp_path_factory.mktemp("protocol") / "lfw", lfw_dir, shared)


def test_benchmark_script_records_recipe_and_result(mini_lfw: Path, tmp_path: Path, shared: Path) -> None:
    config = tmp_path / "lfw.toml"
    config.write_text(
        f'lfw_dir = "{mini_lfw / "lfw-deepfunneled"}"\nflip = true\nthreshold_holdout = 0.3\n'
        "threshold_pairs = 4\n\n[train]\n"
        'backbone = "test-cnn"\nimage_size = 48\nembedding_dim = 16\nnum_epochs = 1\nepoch_size = 2\n'
        'batch_size = 12\npeople_per_batch = 6\nimages_per_person = 3\ndevice = "cpu"\n'
        'lr_schedule = "cosine"\nvalidation.fraction = 0.0\n'
    )
    report = tmp_path / "report.md"
    script = ROOT / "benchmarks" / "lfw_protocol.py"
    args = ["--config", config, "--view", "1", "--out", tmp_path / "out", "--report", report]
    result = subprocess.run(
        [sys.executable, script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FACETOOL_SHARED": str(shared), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()
    accuracy = json.loads((tmp_path / "out" / "view1" / "result.json").read_text())["accuracy"]
    assert (
        "### LFW View 1: test-cnn at 48 px" in text and "python benchmarks/lfw_protocol.py --config" in text
    )
    assert "backbone=test-cnn" in text and "lr_schedule=cosine" in text and "seed 0" in text
    assert "flip=True, threshold_holdout=0.3, threshold_pairs=4" in text
    assert "| view1 |" in text and f"{accuracy:.4f}" in text
    assert "view1" in result.stdout
