"""Model cards are checked field by field against their model file, and every command that uses a model
crops, embeds and decides as its card says: a bad card, a non-finite model or an unreachable threshold is one
line, never a verdict."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import facetool_in_process
from safetensors.torch import save_file

from facetool.cache import open_cache
from facetool.models import load_embedding_model
from facetool.models.model_card import card_path, file_sha256


@pytest.fixture(autouse=True)
def detector_found(ssd_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACETOOL_MODELS", str(ssd_dir))


def one_line_error(done: subprocess.CompletedProcess, code: int = 1) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], lines
    return lines[0]


def edited_copy(model: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of `model` whose card (still naming the copy's SHA-256) went through `edit`."""
    folder.mkdir(exist_ok=True)
    copy = folder / model.name
    shutil.copyfile(model, copy)
    card = json.loads(card_path(model).read_text())
    edit(card)
    card_path(copy).write_text(
        json.dumps(card)
    )  # json.dumps writes NaN as Python does, as a careless tool would
    return copy


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        node = card
        for part in parents:
            node = node[part]
        if value is KeyError:
            del node[key]
        else:
            node[key] = value

    return edit


def both(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        for one in edits:
            one(card)

    return edit


@pytest.fixture(scope="module")
def photos(trained) -> tuple[Path, Path]:
    person = trained.people[0]
    return trained.data_dir / person / f"{person}_0001.jpg", trained.data_dir / person / f"{person}_0002.jpg"


BAD_CARDS = {
    "margin-word": ("safetensors", setting("face_crop.margin", "wide"), "face_crop.margin"),
    "crop-size-huge": ("onnx", setting("face_crop.image_size", 100_000), "face_crop.image_size"),
    "unknown-model-format": ("onnx", setting("model_format", "tflite"), "model_format"),
    "detector-threshold-nan": ("onnx", setting("face_crop.threshold", float("nan")), "face_crop.threshold"),
    "threshold-word": ("onnx", setting("verification.threshold", "abc"), "verification.threshold"),
    "threshold-nan": (
        "safetensors",
        setting("verification.threshold", float("nan")),
        "verification.threshold",
    ),
    "threshold-negative": ("onnx", setting("verification.threshold", -5), "verification.threshold"),
    "threshold-unreachable": ("onnx", setting("verification.threshold", 5.0), "verification"),
    "no-accuracy": ("onnx", setting("verification.accuracy", KeyError), "verification.accuracy"),
    "manhattan": ("onnx", setting("verification.distance", "manhattan"), "verification.distance"),
    "flip-word": ("safetensors", setting("verification.flip", "no"), "verification.flip"),
    "backbone-size-huge": (
        "safetensors",
        both(setting("backbone.image_size", 100_000), setting("input.image_size", 100_000)),
        "backbone.image_size",
    ),
    "onnx-graph-is-48px": (
        "onnx",
        both(setting("backbone.image_size", 64), setting("input.image_size", 64)),
        "backbone.image_size",
    ),
    "safetensors-trained-at-48px": (
        "safetensors",
        both(setting("backbone.image_size", 64), setting("input.image_size", 64)),
        "backbone.image_size",
    ),
    "onnx-gives-16": (
        "onnx",
        both(setting("backbone.embedding_dim", 32), setting("output.size", 32)),
        "backbone.embedding_dim",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_bad_card_is_one_line_naming_the_card_and_the_key(with_threshold, photos, tmp_path, case):
    fmt, edit, key = BAD_CARDS[case]
    model = edited_copy(with_threshold[fmt], tmp_path / "m", edit)
    line = one_line_error(facetool_in_process("verify", model, *photos))
    assert f"{card_path(model)}: " in line and key in line, line


def test_threshold_beyond_what_the_distance_reaches_is_refused(with_threshold, photos):
    for threshold in ("1e308", "4.5"):
        line = one_line_error(facetool_in_process("verify", with_threshold["onnx"], *photos, "--threshold",
                                                  threshold), 2)  # fmt: skip
        assert "threshold" in line
    cosine = edited_copy(with_threshold["onnx"], with_threshold["onnx"].parent.parent / "cos",
                         setting("verification.distance", "cosine"))  # fmt: skip
    line = one_line_error(facetool_in_process("verify", cosine, *photos, "--threshold", "3"), 2)
    assert "cosine" in line and "2" in line
    assert facetool_in_process("verify", cosine, *photos, "--threshold", "2").returncode == 0


def nan_model(trained, exported, folder: Path, fmt: str) -> Path:
    """The trained network with one weight NaN, as a model file of `fmt` whose card names its SHA-256."""
    model, _info = load_embedding_model(trained.checkpoint)
    first = next(name for name, p in model.named_parameters() if p.is_floating_point())
    with torch.no_grad():
        dict(model.named_parameters())[first].view(-1)[0] = float("nan")
    folder.mkdir()
    path = folder / f"nan.{fmt}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.onnx.export(model, (torch.zeros(2, 3, 48, 48),), str(path), input_names=["input"],
                          output_names=["embedding"], dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                          dynamo=False)  # fmt: skip
    card = json.loads(card_path(exported[fmt]).read_text())
    card |= {"model_file": path.name, "sha256": file_sha256(path)}
    card_path(path).write_text(json.dumps(card))
    return path


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_non_finite_model_is_an_error_not_a_verdict(trained, exported, photos, tmp_path, fmt):
    model = nan_model(trained, exported, tmp_path / "nan", fmt)
    line = one_line_error(facetool_in_process("verify", model, photos[0], photos[0], "--threshold", "1"))
    assert "nan." in line and "non-finite" in line
    line = one_line_error(facetool_in_process("embed", model, trained.cache, "-o", tmp_path / "e.npz"))
    assert "nan." in line and "non-finite" in line
    assert not (tmp_path / "e.npz").exists()


def cached_face(cache_path: Path, relative: str) -> np.ndarray:
    with open_cache(cache_path) as cache:
        return cache.read_faces(np.array([cache.paths.index(relative)]))


def test_embed_of_photos_crops_as_the_card_says_unless_told_otherwise(trained, exported, photos, tmp_path):
    """The cache's face of a photo, embedded, is what `embed` gives for the photo itself: same crop settings."""
    from facetool.inference import load_embedder

    relative = photos[0].relative_to(trained.data_dir).as_posix()
    embedder, _card = load_embedder(exported["onnx"])
    expected = embedder(cached_face(trained.cache, relative))[0]
    out = tmp_path / "e.npz"
    done = facetool_in_process("embed", exported["onnx"], photos[0], "-o", out)
    assert done.returncode == 0, done.stderr
    with np.load(out) as npz:
        got, settings = npz["embeddings"][0], json.loads(str(npz["settings"]))
    assert np.abs(got - expected).max() < 1e-5
    assert settings["detect"]["image_size"] == 64 and settings["detect"]["model_format"] == "caffe"
    done = facetool_in_process(
        "embed", exported["onnx"], photos[0], "-o", out, "--set", "detect.image_size=160"
    )
    assert done.returncode == 0, done.stderr
    with np.load(out) as npz:
        assert json.loads(str(npz["settings"]))["detect"]["image_size"] == 160
        assert np.abs(npz["embeddings"][0] - expected).max() > 1e-4


def test_eval_of_a_photo_folder_crops_as_the_card_says(trained, exported, report, tmp_path):
    pairs = report.parent.parent / "pairs.txt"
    done = facetool_in_process("eval", exported["safetensors"], "--data", trained.data_dir, "--pairs", pairs,
                               "--out", tmp_path / "eval", "--device", "cpu")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with open_cache(tmp_path / "eval" / "pairs-faces.h5") as cache:
        assert (cache.meta["image_size"], cache.meta["margin"]) == (64, 0.2)
        assert cache.meta["detector"]["format"] == "caffe"
