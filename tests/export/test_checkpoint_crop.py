"""A checkpoint knows how its training faces were cropped: every command that crops photos for it (and an export
without --cache) follows the training cache, as a model card does, instead of detect's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facetool.cache import open_cache
from facetool.cache.origin import recorded
from facetool.errors import FacetoolError
from facetool.inference import crop_for, load_embedder
from facetool.models.checkpoint import load_checkpoint, read_face_crop
from facetool.models.export import export_model, face_crop_from_meta
from facetool.models.model_card import read_card


def test_the_checkpoint_records_the_training_caches_crop_and_commands_follow_it(
    trained, tmp_path: Path
) -> None:
    with open_cache(trained.cache) as cache:
        expected = face_crop_from_meta(recorded(cache.meta), f"face cache {trained.cache.name}")
    stored = load_checkpoint(trained.checkpoint)["face_crop"]
    assert stored == expected and stored["image_size"] == 64 and stored["model_format"] == "caffe"

    embedder, card = load_embedder(trained.checkpoint)
    assert card is None
    used = crop_for(embedder, None)
    assert (used.image_size, used.model_format, used.margin) == (64, "caffe", expected["margin"])

    out = export_model(trained.checkpoint, tmp_path / "model.safetensors").path
    assert read_card(out)["face_crop"]["image_size"] == 64, (
        "an export without --cache keeps the training crop"
    )


def test_a_malformed_face_crop_field_names_the_checkpoint(trained, tmp_path: Path) -> None:
    ck = load_checkpoint(trained.checkpoint)
    ck["face_crop"] = {**ck["face_crop"], "image_size": 100000}
    with pytest.raises(FacetoolError, match=r"bad\.pth: checkpoint field 'face_crop'.*image_size"):
        read_face_crop(tmp_path / "bad.pth", ck)
    path = tmp_path / "bad.pth"
    torch.save(ck, path)
    with pytest.raises(FacetoolError, match="face_crop"):
        load_embedder(path)
