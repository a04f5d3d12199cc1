"""The LFW protocol end to end on a small real LFW folder: the real detector, tiny-cnn training, evaluation."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from facetool.cache import open_cache
from facetool.config.protocol import ProtocolConfig
from facetool.config.train import TrainConfig, ValidationConfig
from facetool.errors import ConfigError, UsageError
from facetool.protocol import run_protocol

PER_FOLD = 3


def small(lfw_dir: Path, name: str) -> bool:
    return 2 <= len(list((lfw_dir / name).glob("*.jpg"))) <= 4


def names_of(line: str) -> set[str]:
    fields = line.split("\t")
    return {fields[0], fields[2]} if len(fields) == 4 else {fields[0]}


def pick(lines: list[str], lfw_dir: Path, count: int) -> list[str]:
    """The first `count` matched and `count` mismatched lines whose people have 2-4 images."""
    matched = [line for line in lines if len(line.split("\t")) == 3 and small(lfw_dir, line.split("\t")[0])]
    mismatched = [
        line
        for line in lines
        if len(line.split("\t")) == 4 and all(small(lfw_dir, n) for n in names_of(line))
    ]
    return matched[:count] + mismatched[:count]


@pytest.fixture(scope="module")
def mini_lfw(tmp_path_factory, lfw_dir: Path, shared: Path) -> Path:
    """lfw/lfw-deepfunneled with the images of 2 folds of pairs.txt, small View 1 files, and 8 more people."""
    root = tmp_path_factory.mktemp("protocol") / "lfw"
    lines = (shared / "lfw" / "pairs.txt").read_text().splitlines()
    folds = [pick(lines[1 + 600 * k : 1 + 600 * (k + 1)], lfw_dir, PER_FOLD) for k in range(2)]
    root.mkdir()
    (root / "pairs.txt").write_text("\n".join([f"2\t{PER_FOLD}", *folds[0], *folds[1]]) + "\n")
    (root / "pairsDevTrain.txt").write_text("\n".join([str(PER_FOLD), *folds[0]]) + "\n")
    (root / "pairsDevTest.txt").write_text("\n".join([str(PER_FOLD), *folds[1]]) + "\n")
    named = {n for fold in folds for line in fold for n in names_of(line)}
    extra = [
        d.name for d in sorted(lfw_dir.iterdir())[::50] if small(lfw_dir, d.name) and d.name not in named
    ]
    for name in sorted(named) + extra[:8]:
        (root / "lfw-deepfunneled" / name).mkdir(parents=True)
        for image in (lfw_dir / name).glob("*.jpg"):
            (root / "lfw-deepfunneled" / name / image.name).symlink_to(image)
    return root


def recipe(**changes) -> TrainConfig:
    settings = {
        "backbone": "tiny-cnn",
        "image_size": 48,
        "embedding_dim": 16,
        "num_epochs": 1,
        "epoch_size": 3,
        "batch_size": 12,
        "people_per_batch": 6,
        "images_per_person": 3,
        "learning_rate": 0.01,
        "device": "cpu",
        "threads": 1,
        "validation": ValidationConfig(fraction=0.0),
    }
    return TrainConfig(**(settings | changes))


def fold_people(pairs_txt: Path, fold: int) -> set[str]:
    lines = pairs_txt.read_text().splitlines()[1:]
    block = lines[2 * PER_FOLD * (fold - 1) : 2 * PER_FOLD * fold]
    return set().union(*(names_of(line) for line in block))


def test_view2_trains_one_model_per_fold_without_its_people(
    mini_lfw: Path, tmp_path: Path, facetool_cli
) -> None:
    config = ProtocolConfig(
        lfw_dir=mini_lfw / "lfw-deepfunneled", out=tmp_path / "out", view=2, folds=[1, 2], train=recipe()
    )
    said: list[str] = []
    result = run_protocol(config, say=said.append)
    assert [s.name for s in result.splits] == ["fold-01", "fold-02"]
    with open_cache(tmp_path / "out" / "faces.h5") as cache:
        counts = {name: 0 for name in cache.identities}
        for label in cache.labels:
            counts[cache.identities[label]] += 1
    trainable = {n for n, c in counts.items() if c >= 2}
    for split in result.splits:
        left_out = fold_people(mini_lfw / "pairs.txt", split.fold)
        other = fold_people(mini_lfw / "pairs.txt", 3 - split.fold)
        with open_cache(tmp_path / "out" / split.name / "train-faces.h5") as cache:
            assert set(cache.identities) == trainable - left_out
            assert set(cache.identities) & other, "the other fold's people are trained on"
        assert split.train_identities == len(trainable - left_out) and split.epochs == 1
        assert split.test_pairs == 2 * PER_FOLD
        cli = facetool_cli(
            "eval",
            split.checkpoint,
            "--data",
            tmp_path / "out" / "faces.h5",
            "--pairs",
            mini_lfw / "pairs.txt",
            "--fold",
            split.fold,
            "--out",
            tmp_path / f"eval{split.fold}",
            "--device",
            "cpu",
        )
        assert cli.returncode == 0, cli.stderr
        report = json.loads((tmp_path / f"eval{split.fold}" / "report.json").read_text())
        assert report["accuracy"] == pytest.approx(split.accuracy) and report["folds"] == [split.fold]
    record = json.loads(result.path.read_text())
    assert record["result"]["accuracy"] == pytest.approx(statistics.fmean(s.accuracy for s in result.splits))
    assert record["config"]["train"]["backbone"] == "tiny-cnn" and record["config"]["view"] == 2
    assert any("fold-02: accuracy" in line for line in said)

    last = Path(result.splits[0].checkpoint)
    stamp = last.stat().st_mtime_ns
    again = run_protocol(config.model_copy(update={"folds": [1]}))
    assert last.stat().st_mtime_ns == stamp, "a finished split is not trained again"
    assert again.splits == result.splits, "the summary keeps the folds of earlier runs"
    assert not list((tmp_path / "out").rglob("*partial*"))

    changed = config.model_copy(update={"train": recipe(learning_rate=0.02)})
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        run_protocol(changed)


def test_view1_leaves_out_the_dev_test_people(mini_lfw: Path, tmp_path: Path) -> None:
    config = ProtocolConfig(
        lfw_dir=mini_lfw / "lfw-deepfunneled", out=tmp_path / "out", view=1, train=recipe()
    )
    result = run_protocol(config)
    (split,) = result.splits
    assert split.name == "view1" and split.fold is None and split.test_pairs == 2 * PER_FOLD
    dev_test = {
        n for line in (mini_lfw / "pairsDevTest.txt").read_text().splitlines()[1:] for n in names_of(line)
    }
    with open_cache(tmp_path / "out" / "view1" / "train-faces.h5") as cache:
        assert dev_test and not set(cache.identities) & dev_test
    report = json.loads(Path(split.report).read_text())
    assert report["protocol"] == "train/test" and report["train_pairs_file"].endswith("pairsDevTrain.txt")

    faces = tmp_path / "out" / "faces.h5"
    again = run_protocol(config.model_copy(update={"faces": faces, "out": tmp_path / "out2"}))
    assert not (tmp_path / "out2" / "faces.h5").exists(), "the given face cache is used, not a new detection"
    assert again.accuracy == result.accuracy, "a fixed seed repeats the run on the CPU"


def test_missing_inputs_are_named(tmp_path: Path, mini_lfw: Path) -> None:
    with pytest.raises(UsageError, match=r"pairsDevTest\.txt: pairs file not found"):
        run_protocol(ProtocolConfig(lfw_dir=tmp_path / "lfw", out=tmp_path / "o"))
    with pytest.raises(UsageError, match=r"nope\.h5: face cache not found"):
        run_protocol(ProtocolConfig(pairs_dir=mini_lfw, faces=tmp_path / "nope.h5", out=tmp_path / "o2"))
    with pytest.raises(ValueError, match="folds are numbered 1 to 10"):
        ProtocolConfig(view=2, folds=[0, 11])


def test_protocol_command_runs_a_toml_recipe(mini_lfw: Path, tmp_path: Path, facetool_cli) -> None:
    config = tmp_path / "lfw.toml"
    config.write_text(
        f'lfw_dir = "{mini_lfw / "lfw-deepfunneled"}"\nview = 2\n\n[train]\n'
        'backbone = "tiny-cnn"\nimage_size = 48\nembedding_dim = 16\nnum_epochs = 1\nepoch_size = 2\n'
        'batch_size = 12\npeople_per_batch = 6\nimages_per_person = 3\ndevice = "cpu"\n'
        "validation.fraction = 0.0\n"
    )
    out = tmp_path / "out"
    result = facetool_cli("protocol", "--config", config, "--fold", "2", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [s["name"] for s in summary["splits"]] == ["fold-02"] and summary["view"] == 2
    assert json.loads((out / "fold-02" / "result.json").read_text())["accuracy"] == summary["accuracy"]
    table = facetool_cli("protocol", "--config", config, "--fold", "2", "--out", out)
    assert table.returncode == 0 and "mean of 1" in table.stdout and "fold-02" in table.stdout

    bad = facetool_cli("protocol", "--config", config, "--set", "train.num_epoch=3", "--out", out)
    assert (
        bad.returncode == 2
        and f"{config} (with command-line overrides): train.num_epoch: unknown key" in bad.stderr
    )
    assert len(bad.stderr.splitlines()) == 1


def test_benchmark_script_records_recipe_and_result(mini_lfw: Path, tmp_path: Path, shared: Path) -> None:
    config = tmp_path / "lfw.toml"
    config.write_text(
        f'lfw_dir = "{mini_lfw / "lfw-deepfunneled"}"\n\n[train]\n'
        'backbone = "tiny-cnn"\nimage_size = 48\nembedding_dim = 16\nnum_epochs = 1\nepoch_size = 2\n'
        'batch_size = 12\npeople_per_batch = 6\nimages_per_person = 3\ndevice = "cpu"\n'
        'lr_schedule = "cosine"\nvalidation.fraction = 0.0\n'
    )
    report = tmp_path / "report.md"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "lfw_protocol.py"
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
        "### LFW View 1: tiny-cnn at 48 px" in text and "python benchmarks/lfw_protocol.py --config" in text
    )
    assert "backbone=tiny-cnn" in text and "lr_schedule=cosine" in text and "seed 0" in text
    assert "| view1 |" in text and f"{accuracy:.4f}" in text
    assert "view1" in result.stdout
