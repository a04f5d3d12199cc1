"""benchmarks/heldout_tuning.py on a small real LFW folder: it holds out the people `protocol` holds out for its
threshold, trains without them, and scores what `facetool eval` scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_facetool
from lfw_mini import make_mini_lfw, names_of

from facetool.cache import open_cache

ROOT = Path(__file__).resolve().parents[2]
RECIPE = (
    "flip = true\nthreshold_holdout = 0.3\nthreshold_pairs = 4\nmodels = 2\n\n[train]\n"
    'backbone = "test-cnn"\nimage_size = 48\nembedding_dim = 16\nnum_epochs = 2\nepoch_size = 2\n'
    'batch_size = 12\npeople_per_batch = 6\nimages_per_person = 3\ndevice = "cpu"\ncheckpoint_every = 1\n'
    "validation.fraction = 0.0\n"
)


@pytest.fixture(scope="module")
def mini(tmp_path_factory, lfw_dir: Path, shared: Path) -> tuple[Path, Path]:
    """The mini LFW folder and its face cache, detected by the real detector."""
    root = make_mini_lfw(tmp_path_factory.mktemp("tuning") / "lfw", lfw_dir, shared)
    cache = root.parent / "faces.h5"
    result = run_facetool("detect", str(root / "lfw-deepfunneled"), "-o", str(cache), "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    return root, cache


def tune(recipe: Path, cache: Path, out: Path, report: Path, shared: Path, pairs_dir: Path):
    args = ["--config", recipe, "--faces", cache, "--out", out, "--pairs", "10", "--epoch", "1"]
    args += ["--set", f"pairs_dir={pairs_dir}", "--report", report]
    return subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "heldout_tuning.py", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FACETOOL_SHARED": str(shared), "COLUMNS": "200"},
    )


def rows(report: Path) -> dict[tuple[str, str], float]:
    """(models, epoch) -> accuracy of the report's table."""
    found = {}
    for line in report.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] != "variant" and not cells[0].startswith("---"):
            found[(cells[1], cells[2])] = float(cells[3])
    return found


def test_tuning_holds_out_the_protocols_threshold_people_and_scores_as_eval_does(
    mini: tuple[Path, Path], tmp_path: Path, shared: Path
) -> None:
    root, cache = mini
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    out, report = tmp_path / "tune", tmp_path / "report.md"
    result = tune(recipe, cache, out, report, shared, root)
    assert result.returncode == 0, result.stderr[-3000:]

    protocol = run_facetool(
        "protocol", "--config", str(recipe), "--faces", str(cache), "--set", f"pairs_dir={root}",
        "--set", "train.num_epochs=1", "--out", str(tmp_path / "protocol"),
    )  # fmt: skip
    assert protocol.returncode == 0, protocol.stderr[-2000:]
    held = (out / "people.txt").read_text().split()
    assert held and held == (tmp_path / "protocol" / "view1" / "threshold-people.txt").read_text().split()
    test_people = {
        n for line in (root / "pairsDevTest.txt").read_text().splitlines()[1:] for n in names_of(line)
    }
    with open_cache(out / "train-faces.h5") as trained:
        identities = set(trained.identities)
    assert identities and not identities & set(held) and not identities & test_people
    pairs = (out / "pairs.txt").read_text().splitlines()[1:]
    assert {n for line in pairs for n in line.split("\t")[::2] if not n.isdigit()} <= set(held)

    scored = rows(report)
    assert set(scored) == {
        ("seed 0", "2"), ("seed 1", "2"), ("0 + 1", "2"),
        ("seed 0", "1"), ("seed 1", "1"), ("0 + 1", "1"), ("0 + 1", "all of these"),
    }  # fmt: skip
    for checkpoints, key in [
        (["seed-0/last.pth"], ("seed 0", "2")),
        (["seed-0/last.pth", "seed-1/last.pth"], ("0 + 1", "2")),
        (["seed-1/epoch_0001.pth"], ("seed 1", "1")),
    ]:
        evaluated = run_facetool(
            "eval", *(str(out / c) for c in checkpoints), "--data", str(cache), "--flip",
            "--pairs", str(out / "pairs.txt"), "--out", str(tmp_path / "eval"), "--device", "cpu",
        )  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        accuracy = json.loads((tmp_path / "eval" / "report.json").read_text())["accuracy"]
        assert scored[key] == pytest.approx(accuracy, abs=5e-4)

    again = tune(recipe, cache, out, tmp_path / "again.md", shared, root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert rows(tmp_path / "again.md") == scored
    log = (out / "seed-0" / "train.log").read_text()
    assert log.count("epoch 2/2:") == 1
