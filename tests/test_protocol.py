"""The LFW protocol end to end on a small real LFW folder: the real detector, test-cnn training, evaluation."""

from __future__ import annotations

import json
import shutil
import statistics
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from cli_helpers import facetool_in_process
from lfw_mini import PER_FOLD, make_mini_lfw, names_of
from pydantic import ValidationError

from facetool.cache import open_cache
from facetool.cache.digest import content_digest
from facetool.config.protocol import ProtocolConfig
from facetool.config.train import TrainConfig, ValidationConfig
from facetool.errors import ConfigError, PluginError, UsageError
from facetool.models.checkpoint import load_checkpoint
from facetool.protocol import SplitResult, recipe_settings, run_protocol


@pytest.fixture(scope="module")
def mini_lfw(tmp_path_factory, lfw_dir: Path, shared: Path) -> Path:
    return make_mini_lfw(tmp_path_factory.mktemp("protocol") / "lfw", lfw_dir, shared)


def recipe(**changes) -> TrainConfig:
    settings = {
        "backbone": "test-cnn",
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
    assert record["config"]["train"]["backbone"] == {"name": "test-cnn"} and record["config"]["view"] == 2
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

    result_file = tmp_path / "out2" / "view1" / "result.json"
    stamp = result_file.stat().st_mtime_ns
    other = tmp_path / "out" / "view1" / "train-faces.h5"
    with pytest.raises(
        ConfigError, match=r"train-faces\.h5: other faces than the run in .*out2 was made from"
    ):
        run_protocol(config.model_copy(update={"faces": other, "out": tmp_path / "out2"}))
    assert result_file.stat().st_mtime_ns == stamp, "nothing is trained or scored with other faces"
    copy = tmp_path / "elsewhere" / "copy.h5"
    copy.parent.mkdir()
    shutil.copyfile(faces, copy)
    assert content_digest(copy) == content_digest(faces) != content_digest(other)
    moved = run_protocol(config.model_copy(update={"faces": copy, "out": tmp_path / "out2"}))
    assert moved.accuracy == again.accuracy, "the same faces under another name are the same recipe"

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


def test_a_recipe_stored_before_plugin_tables_and_retired_knobs_takes_a_rerun(tmp_path: Path) -> None:
    """An output folder's recipe.json from before miners and backbones had tables, and before the internal knobs
    became constants, names plugins by plain names and holds those knobs: the same recipe today is no change."""
    from facetool.config.protocol import changed_keys, upgraded_recipe

    config = ProtocolConfig(
        lfw_dir=tmp_path / "lfw",
        out=tmp_path / "out",
        view=1,
        train=recipe(miner="hard", miner_stages=[{"epoch": 2, "miner": "random"}]),
    )
    today = recipe_settings(config)
    old = json.loads(json.dumps(today))
    old["train"] |= {"backbone": "test-cnn", "miner": "hard", "embed_batch_size": 256}
    old["train"]["miner_stages"] = [{"epoch": 2, "miner": "random"}]
    old["train"]["engine"] |= {"channels_last": "auto", "fused_optimizer": "auto"}
    old["train"]["data"]["resize_once"] = True
    old["detect"] |= {"batch_size": 16, "commit_images": 256, "commit_seconds": 5.0}
    assert changed_keys(old, today)  # the stored spelling differs ...
    assert changed_keys(upgraded_recipe(old), today) == []  # ... the recipe does not
    old["train"]["backbone"] = "other-cnn"
    assert changed_keys(upgraded_recipe(old), today) == ["train.backbone.name"]


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
        'backbone = "test-cnn"\nimage_size = 48\nembedding_dim = 16\nnum_epochs = 1\nepoch_size = 2\n'
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


@pytest.mark.parametrize(
    ("snapshots", "num_epochs", "every", "message"),
    [
        ([1], 1, 10, r"epoch 1 is not before the last epoch \(train\.num_epochs = 1\)"),
        ([2], 2, 1, r"epoch 2 is not before the last epoch \(train\.num_epochs = 2\)"),
        (
            [3],
            10,
            2,
            r"epoch 3 is not saved: training keeps the checkpoints of epochs 2, 4, 6, \.\.\. before",
        ),
        ([3], 5, 4, r"epoch 3 is not saved: training keeps the checkpoints of epoch 4 before"),
        ([3], 5, 10, r"epoch 3 is not saved: training keeps the checkpoints of no epoch before"),
    ],
)
def test_a_refused_snapshot_says_which_epochs_are_saved(
    tmp_path: Path, snapshots: list[int], num_epochs: int, every: int, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ProtocolConfig(
            lfw_dir=tmp_path, snapshots=snapshots, train=recipe(num_epochs=num_epochs, checkpoint_every=every)
        )


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"backbone": {"name": "test-cnn", "hed": "gdc"}},
            ConfigError,
            r"train\.backbone\.hed: unknown key \(backbone 'test-cnn'\)",
        ),
        ({"loss": "arcfase"}, PluginError, r"train\.loss: unknown loss 'arcfase'"),
        ({"miner": "semihardd"}, PluginError, r"train\.miner: unknown miner 'semihardd'"),
        (
            {"miner_stages": [{"epoch": 2, "miner": "hardd"}]},
            PluginError,
            r"train\.miner_stages\.0\.miner: unknown",
        ),
        ({"backbone": "test-cnnn"}, PluginError, r"train\.backbone: unknown backbone 'test-cnnn'"),
    ],
)
def test_a_recipe_a_plugin_refuses_stores_and_detects_nothing(
    mini_lfw: Path, tmp_path: Path, changes: dict, error: type, message: str
) -> None:
    """Plugin names and `[loss]` keys are checked before detection, so the corrected rerun is not refused."""
    config = ProtocolConfig(
        lfw_dir=mini_lfw / "lfw-deepfunneled", out=tmp_path / "out", view=1, train=recipe(**changes)
    )
    with pytest.raises(error, match=message):
        run_protocol(config)
    assert not (tmp_path / "out").exists()


def test_an_out_that_cannot_be_a_folder_is_one_line(mini_lfw: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine\n")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        cli = facetool_in_process("protocol", "--lfw-dir", mini_lfw / "lfw-deepfunneled", "--out", out)
        assert cli.returncode == 1 and "internal error" not in cli.stderr, cli.stderr
        assert "cannot create the output folder" in cli.stderr and len(cli.stderr.splitlines()) == 1
    assert (tmp_path / "file").read_text() == "mine\n"


def test_an_out_inside_the_lfw_folder_is_refused_before_writing_there(
    mini_lfw: Path, tmp_path: Path, lfw_dir: Path
) -> None:
    lfw = tmp_path / "lfw"
    person = next(p for p in sorted(lfw_dir.iterdir()) if p.is_dir())
    (lfw / person.name).mkdir(parents=True)
    for image in person.glob("*.jpg"):
        (lfw / person.name / image.name).symlink_to(image)
    before = sorted(lfw.rglob("*"))
    config = ProtocolConfig(lfw_dir=lfw, pairs_dir=mini_lfw, out=lfw / "runs", view=1, train=recipe())
    with pytest.raises(UsageError, match=r"--out lies inside the input folder"):
        run_protocol(config)
    assert sorted(lfw.rglob("*")) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"not a readable protocol recipe \(it is empty\)"),
        ("{", r"not a readable protocol recipe \(Expecting"),
        ("[1, 2]", r"not a protocol recipe \(a JSON list, expected an object\)"),
    ],
)
def test_a_stored_recipe_that_is_not_one_is_named(
    mini_lfw: Path, tmp_path: Path, text: str, message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "protocol-recipe.json").write_text(text)
    config = ProtocolConfig(lfw_dir=tmp_path / "no-lfw", pairs_dir=mini_lfw, out=out, view=1, train=recipe())
    with pytest.raises(ConfigError, match=rf"protocol-recipe\.json: {message}"):
        run_protocol(config)
    assert sorted(p.name for p in out.iterdir()) == ["protocol-recipe.json"]


def test_a_fold_result_of_a_newer_version_is_refused_before_training(mini_lfw: Path, tmp_path: Path) -> None:
    """Averaging a fold whose result holds fields this version does not know would claim a recipe it cannot
    check; the run stops before any work rather than after training the other folds."""
    out = tmp_path / "out"
    config = ProtocolConfig(lfw_dir=mini_lfw / "lfw-deepfunneled", out=out, view=2, folds=[2], train=recipe())
    (out / "fold-01").mkdir(parents=True)
    (out / "protocol-recipe.json").write_text(json.dumps(recipe_settings(config)))
    result = SplitResult("fold-01", 1, 0.5, 1.0, 0.0, 0.5, 6, 10, 30, 1, 1.0, "last.pth", "report.json")
    (out / "fold-01" / "result.json").write_text(json.dumps({**asdict(result), "calibration": "v2"}))
    with pytest.raises(ConfigError, match=r"fold-01/result\.json: unknown key 'calibration'"):
        run_protocol(config)
    assert not (out / "fold-02").exists() and not (out / "faces.h5").exists()
