"""The LFW protocol end to end on a small real LFW folder: the real detector, tiny-cnn training, evaluation."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest
import torch
from lfw_mini import PER_FOLD, make_mini_lfw, names_of
from pydantic import ValidationError

from facetool.cache import open_cache
from facetool.config.protocol import ProtocolConfig
from facetool.config.train import TrainConfig, ValidationConfig
from facetool.errors import ConfigError, UsageError
from facetool.models.checkpoint import load_checkpoint
from facetool.protocol import recipe_settings, run_protocol


@pytest.fixture(scope="module")
def mini_lfw(tmp_path_factory, lfw_dir: Path, shared: Path) -> Path:
    return make_mini_lfw(tmp_path_factory.mktemp("protocol") / "lfw", lfw_dir, shared)


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


def eval_dev_test(facetool_cli, checkpoints: list[str], mini_lfw: Path, tmp_path: Path) -> dict:
    """`facetool eval` of `checkpoints` as one on DevTest, thresholds from DevTrain, mirrored faces: its report."""
    cli = facetool_cli(
        "eval", *checkpoints, "--data", tmp_path / "out" / "faces.h5",
        "--pairs", mini_lfw / "pairsDevTest.txt", "--train-pairs", mini_lfw / "pairsDevTrain.txt",
        "--flip", "--device", "cpu", "--out", tmp_path / "eval",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    return json.loads((tmp_path / "eval" / "report.json").read_text())


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

    with open_cache(faces) as cache:
        counts = Counter(cache.identities[label] for label in cache.labels)
    singles = {name for name, n in counts.items() if n == 1} - dev_test
    extra = config.model_copy(
        update={"faces": faces, "out": tmp_path / "out3", "train": recipe(extra_negatives=3)}
    )
    (with_singles,) = run_protocol(extra).splits
    with (
        open_cache(tmp_path / "out3" / "view1" / "train-faces.h5") as cache,
        open_cache(tmp_path / "out" / "view1" / "train-faces.h5") as plain,
    ):
        assert singles and set(cache.identities) == set(plain.identities) | singles
    assert with_singles.train_identities == split.train_identities + len(singles)
    assert "extra_negatives" not in recipe_settings(config)["train"], (
        "runs made before the setting still match"
    )
    assert recipe_settings(extra)["train"]["extra_negatives"] == 3


def test_several_models_train_side_by_side_and_score_as_one(
    mini_lfw: Path, tmp_path: Path, facetool_cli
) -> None:
    config = ProtocolConfig(
        lfw_dir=mini_lfw / "lfw-deepfunneled",
        out=tmp_path / "out",
        view=1,
        models=2,
        jobs=1,
        flip=True,
        train=recipe(seed=3),
    )
    (split,) = run_protocol(config).splits
    view1 = tmp_path / "out" / "view1"
    assert split.checkpoints == [str(view1 / "run" / "last.pth"), str(view1 / "run-2" / "last.pth")]
    one_after_the_other = sum(
        epoch["time_s"]
        for run in ("run", "run-2")
        for epoch in json.loads((view1 / run / "history.json").read_text())
    )
    assert split.train_seconds == pytest.approx(one_after_the_other, abs=0.1)
    first, second = (load_checkpoint(path) for path in split.checkpoints)
    assert (first["config"]["seed"], second["config"]["seed"]) == (3, 4)
    assert not torch.equal(first["model"]["head.weight"], second["model"]["head.weight"])
    assert recipe_settings(config)["models"] == 2 and "models" not in recipe_settings(
        config.model_copy(update={"models": 1})
    )
    assert recipe_settings(config) == recipe_settings(config.model_copy(update={"jobs": 0})), (
        "how many train at once does not change the models"
    )
    report = eval_dev_test(facetool_cli, split.checkpoints, mini_lfw, tmp_path)
    assert report["accuracy"] == pytest.approx(split.accuracy) and report["auc"] == pytest.approx(split.auc)
    assert report["held_out"] is True


def test_a_folder_recorded_before_faces_were_resized_once_takes_a_rerun(tmp_path: Path) -> None:
    """Resizing once changes no bit of a run, so it is not part of the recipe a rerun must keep."""
    config = ProtocolConfig(lfw_dir=tmp_path / "lfw", out=tmp_path / "out", view=1, train=recipe())
    off = config.model_copy(update={"train": recipe(data={"resize_once": False})})
    assert recipe_settings(config) == recipe_settings(off)
    assert "resize_once" not in recipe_settings(config)["train"]["data"]
    assert recipe_settings(config)["train"]["data"] == {"preload": "auto", "workers": None}


def test_a_folder_recorded_before_lr_cycles_existed_resumes(tmp_path: Path) -> None:
    """One cycle is the schedule of every run made before `lr_cycles`, so it is left out of the recipe."""
    config = ProtocolConfig(lfw_dir=tmp_path / "lfw", out=tmp_path / "out", view=1, train=recipe())
    assert "lr_cycles" not in recipe_settings(config)["train"]
    cycles = config.model_copy(update={"train": recipe(lr_schedule="cosine", num_epochs=4, lr_cycles=2)})
    assert recipe_settings(cycles)["train"]["lr_cycles"] == 2


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


def test_threshold_from_pairs_of_people_held_out_of_training(
    mini_lfw: Path, tmp_path: Path, facetool_cli
) -> None:
    config = ProtocolConfig(
        lfw_dir=mini_lfw / "lfw-deepfunneled",
        out=tmp_path / "out",
        view=2,
        folds=[1],
        threshold_holdout=0.3,
        threshold_pairs=4,
        train=recipe(),
    )
    said: list[str] = []
    (split,) = run_protocol(config, say=said.append).splits
    folder = tmp_path / "out" / "fold-01"
    held = set((folder / "threshold-people.txt").read_text().split())
    pairs_text = (folder / "threshold-pairs.txt").read_text()
    named = {n for line in pairs_text.splitlines()[1:] for n in names_of(line)}
    assert held and named <= held and not held & fold_people(mini_lfw / "pairs.txt", 1)
    with open_cache(tmp_path / "out" / "fold-01" / "train-faces.h5") as cache:
        trained = set(cache.identities)
    assert trained and not trained & held, "the threshold's people are held out of training"
    assert not trained & fold_people(mini_lfw / "pairs.txt", 1)
    report = json.loads(Path(split.report).read_text())
    assert report["protocol"] == "fold 1 of 2, thresholds from training"
    assert report["train_pairs_file"] == str(folder / "threshold-pairs.txt")
    assert report["threshold_identities_trained"] == 0 and report["held_out"] is True
    assert any("held out to choose the threshold" in line for line in said)

    cli = facetool_cli(
        "eval", split.checkpoint, "--data", tmp_path / "out" / "faces.h5", "--pairs", mini_lfw / "pairs.txt",
        "--fold", "1", "--train-pairs", folder / "threshold-pairs.txt", "--out", tmp_path / "eval",
        "--device", "cpu",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["accuracy"] == split.accuracy

    again = run_protocol(
        config.model_copy(update={"out": tmp_path / "out2", "faces": tmp_path / "out" / "faces.h5"})
    )
    assert (tmp_path / "out2" / "fold-01" / "threshold-pairs.txt").read_text() == pairs_text
    assert again.splits[0].accuracy == split.accuracy, "the seed draws the same people and pairs"
    with pytest.raises(ConfigError, match="threshold_holdout"):
        run_protocol(config.model_copy(update={"threshold_holdout": 0.2}))
    with pytest.raises(ConfigError, match="threshold_holdout"):
        run_protocol(config.model_copy(update={"threshold_holdout": 0.0}))


def test_snapshots_join_the_ensemble_as_eval_scores_them(
    mini_lfw: Path, tmp_path: Path, facetool_cli
) -> None:
    config = ProtocolConfig(
        lfw_dir=mini_lfw / "lfw-deepfunneled",
        out=tmp_path / "out",
        view=1,
        flip=True,
        snapshots=[1],
        train=recipe(num_epochs=2, checkpoint_every=1),
    )
    (split,) = run_protocol(config).splits
    run = tmp_path / "out" / "view1" / "run"
    assert split.checkpoints == [str(run / "last.pth"), str(run / "epoch_0001.pth")]
    report = eval_dev_test(facetool_cli, split.checkpoints, mini_lfw, tmp_path)
    assert report["accuracy"] == pytest.approx(split.accuracy) and report["auc"] == pytest.approx(split.auc)
    assert recipe_settings(config)["snapshots"] == [1]
    assert "snapshots" not in recipe_settings(config.model_copy(update={"snapshots": []}))

    (run / "epoch_0001.pth").unlink()
    with pytest.raises(UsageError, match=r"epoch_0001\.pth: snapshot of epoch 1 not found"):
        run_protocol(config)


@pytest.mark.parametrize(
    ("snapshots", "num_epochs", "every"), [([2], 2, 1), ([3], 8, 2), ([0], 2, 1), ([1, 1], 2, 1)]
)
def test_a_snapshot_training_does_not_save_is_refused(
    tmp_path: Path, snapshots: list[int], num_epochs: int, every: int
) -> None:
    with pytest.raises(ValidationError, match="snapshots: epoch"):
        ProtocolConfig(
            lfw_dir=tmp_path,
            snapshots=snapshots,
            train=recipe(num_epochs=num_epochs, checkpoint_every=every),
        )
