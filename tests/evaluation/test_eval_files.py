"""What `facetool eval` reads and writes: inputs are never replaced, reads are bounded, folders are cropped
as training's caches are, and a model trained on the pairs' people is reported as not held out."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from rich.console import Console

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.config.evaluate import EvalConfig
from facetool.data.transforms import embed_faces
from facetool.errors import PairsError, UsageError
from facetool.evaluation.data import faces_for_pairs, link_pair_images
from facetool.evaluation.pairs import read_pairs
from facetool.evaluation.pipeline import evaluate_checkpoint, with_training_overlap
from facetool.evaluation.report import render_report, summary_line
from facetool.evaluation.run import evaluate_on_pairs
from facetool.identities import identity_digests
from facetool.models import ModelInfo, load_embedding_model
from facetool.models.checkpoint import load_checkpoint, save_checkpoint


def tiny_pairs(small_pairs, tmp_path: Path) -> Path:
    """Two folds of one matched and one mismatched pair: four LFW images to detect."""
    lines = small_pairs.view2.read_text().splitlines()
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(["2\t1", lines[1], lines[4], lines[7], lines[10]]) + "\n")
    return path


def test_pairs_from_an_endless_stream_stop_at_once():
    with pytest.raises(PairsError, match=r"/dev/zero: cannot read pairs file \(pairs file is larger than"):
        read_pairs("/dev/zero")


def test_pairs_file_that_is_not_utf8_names_its_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"1\nA\t1\t2\n\xff\t1\tB\t1\n")
    with pytest.raises(PairsError, match=r"bad.txt: cannot read pairs file \(3: pairs file is not UTF-8"):
        read_pairs(bad)


def test_data_inside_the_link_folder_is_refused_and_left_alone(small_pairs, lfw_dir, tmp_path):
    """`--data OUT/pairs-images --out OUT` once replaced each real image with a link to itself."""
    pairs = read_pairs(tiny_pairs(small_pairs, tmp_path))
    out = tmp_path / "out"
    images = out / "pairs-images"
    for rel in pairs.images:
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lfw_dir / rel, images / rel)
    with pytest.raises(UsageError, match=r"lies inside .*pairs-images"):
        faces_for_pairs(images, [pairs], out, DetectConfig())
    for rel in pairs.images:
        assert not (images / rel).is_symlink()
        assert (images / rel).read_bytes() == (lfw_dir / rel).read_bytes()
    # the link step itself never replaces a file it did not make
    with pytest.raises(UsageError, match="not a link made by eval"):
        link_pair_images(lfw_dir, [pairs], images)
    assert (images / pairs.images[0]).read_bytes() == (lfw_dir / pairs.images[0]).read_bytes()


def test_out_inside_the_data_folder_is_refused(checkpoint, small_pairs, tmp_path):
    data = tmp_path / "people"
    data.mkdir()
    config = EvalConfig(data=data, pairs=tiny_pairs(small_pairs, tmp_path), out=data / "eval", device="cpu")
    with pytest.raises(UsageError, match="--out lies inside the input folder"):
        evaluate_checkpoint(checkpoint, config)
    assert list(data.iterdir()) == []


def test_out_over_an_input_is_refused(checkpoint, pair_cache, small_pairs, tmp_path):
    pairs = tmp_path / "report.json"
    pairs.write_text(small_pairs.view2.read_text())
    config = EvalConfig(data=pair_cache, pairs=pairs, out=tmp_path, device="cpu")
    with pytest.raises(UsageError, match="--out names an input"):
        evaluate_checkpoint(checkpoint, config)
    assert pairs.read_text() == small_pairs.view2.read_text()


def test_folder_is_cropped_at_the_cache_size_then_resized(checkpoint, small_pairs, lfw_dir, tmp_path):
    """A model trained at 80 px on a 160 px cache is evaluated on 160 px crops resized to 80, as trained."""
    out = tmp_path / "out"
    pairs = tiny_pairs(small_pairs, tmp_path)
    config = EvalConfig(data=lfw_dir, pairs=pairs, out=out, device="cpu", detect=DetectConfig(workers=1))
    outcome = evaluate_checkpoint(checkpoint, config)
    model, info = load_embedding_model(checkpoint)
    with open_cache(outcome.cache_path) as cache:
        assert cache.image_size == DetectConfig().image_size != info.image_size
        expected = evaluate_on_pairs(model, cache, pairs, image_size=info.image_size)
        faces = cache.read_faces()
    assert outcome.report.fold_accuracy == pytest.approx(expected.fold_accuracy)
    assert outcome.report.fold_val == pytest.approx(expected.fold_val)
    assert embed_faces(model, faces, image_size=info.image_size).shape == (len(faces), info.embedding_dim)


def overlap_report(model, pair_cache, small_pairs, trained_people):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2)
    return with_training_overlap(report, read_pairs(small_pairs.view2), identity_digests(trained_people))


def test_overlap_with_training_people_marks_the_result(model, pair_cache, small_pairs):
    people = sorted({p.split("/")[0] for p in read_pairs(small_pairs.view2).images})
    report = overlap_report(model, pair_cache, small_pairs, [people[0], people[2], "Not_In_The_Pairs"])
    assert report.held_out is False and report.trained_identities_in_pairs == 2
    assert report.to_dict()["held_out"] is False and report.to_dict()["trained_identities_in_pairs"] == 2
    assert "NOT HELD OUT" in summary_line(report) and "2 of the pairs' people" in summary_line(report)
    console = Console(record=True, width=200)
    render_report(report, console)
    assert console.export_text().count("NOT HELD OUT") == 2
    held_out = overlap_report(model, pair_cache, small_pairs, ["Not_In_The_Pairs"])
    assert held_out.held_out is True and held_out.trained_identities_in_pairs == 0
    assert "HELD OUT" not in summary_line(held_out)


def test_a_threshold_chosen_on_trained_people_is_noted(model, pair_cache, small_pairs):
    """Fold 1 scored with thresholds from the other folds: people trained on only there are no test overlap,
    but the note says the threshold came from trained people; people of fold 1 make it NOT HELD OUT."""
    pairs = read_pairs(small_pairs.view2)
    fold1, others = pairs.identities(0), set().union(*(pairs.identities(k) for k in range(1, pairs.n_folds)))
    only_elsewhere = sorted(others - fold1)[:2]
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2, fold=1)
    noted = with_training_overlap(report, pairs, identity_digests(only_elsewhere), fold=1)
    assert noted.held_out is True and noted.trained_identities_in_pairs == 0
    assert noted.threshold_identities_trained == 2
    assert "threshold chosen on pairs of 2 people the model was trained on" in summary_line(noted)
    scored = with_training_overlap(report, pairs, identity_digests(sorted(fold1)[:1]), fold=1)
    assert scored.held_out is False and "NOT HELD OUT" in summary_line(scored)
    clean = with_training_overlap(report, pairs, identity_digests(["Not_In_The_Pairs"]), fold=1)
    assert clean.threshold_identities_trained == 0 and summary_line(clean).startswith("accuracy")


def test_model_without_its_people_says_nothing(model, pair_cache, small_pairs):
    with open_cache(pair_cache) as cache:
        report = evaluate_on_pairs(model, cache, small_pairs.view2)
    assert with_training_overlap(report, read_pairs(small_pairs.view2), None) == report
    assert report.held_out is None and "HELD OUT" not in summary_line(report)


def test_eval_cli_reports_a_model_trained_on_the_pairs_people(
    facetool_cli, checkpoint, pair_cache, small_pairs, tmp_path
):
    if "train_identities" not in {f.name for f in fields(ModelInfo)}:
        pytest.skip("load_embedding_model does not expose ModelInfo.train_identities on this branch yet")
    ckpt = load_checkpoint(checkpoint)
    people = sorted({p.split("/")[0] for p in read_pairs(small_pairs.view2).images})
    ckpt["train_identities"] = sorted(identity_digests(people[:3]))
    trained = tmp_path / "trained.pth"
    save_checkpoint(ckpt, trained)
    out = tmp_path / "out"
    args = ["--data", pair_cache, "--pairs", small_pairs.view2, "--out", out, "--device", "cpu"]
    result = facetool_cli("eval", trained, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["held_out"] is False and report["trained_identities_in_pairs"] == 3
    assert "NOT HELD OUT" in result.stdout


def test_eval_cli_view1_with_trained_threshold_people_is_held_out_and_noted(
    facetool_cli, checkpoint, pair_cache, small_pairs, tmp_path
):
    """View 1 as the protocol runs it: the model was trained on DevTrain's people but on none of DevTest's.
    The test figures are held out (they were marked NOT HELD OUT), and the threshold's origin is noted."""
    test_people = {p.split("/")[0] for p in read_pairs(small_pairs.dev_test).images}
    train_people = sorted({p.split("/")[0] for p in read_pairs(small_pairs.dev_train).images} - test_people)
    ckpt = load_checkpoint(checkpoint)
    ckpt["train_identities"] = sorted(identity_digests(train_people))
    trained = tmp_path / "trained.pth"
    save_checkpoint(ckpt, trained)
    out = tmp_path / "out"
    args = ["--data", pair_cache, "--pairs", small_pairs.dev_test, "--train-pairs", small_pairs.dev_train,
            "--out", out, "--device", "cpu"]  # fmt: skip
    result = facetool_cli("eval", trained, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["held_out"] is True and report["trained_identities_in_pairs"] == 0
    assert report["threshold_identities_trained"] == len(train_people) > 0
    assert "NOT HELD OUT" not in result.stdout
    assert f"threshold chosen on pairs of {len(train_people)} people" in " ".join(result.stdout.split())
