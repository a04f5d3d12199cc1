"""An export from a merged training cache carries that cache's crop settings, so `verify` crops as training did
(issue 28: merge dropped them and the card got detect's defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from facetool.cache import open_cache
from facetool.config.dataset import FilterSettings
from facetool.config.export import VerifyConfig
from facetool.curation import filter_cache, merge_caches
from facetool.models.model_card import crop_config


def test_export_from_a_merged_cache_writes_the_training_crop_settings(trained, tmp_path: Path) -> None:
    halves = []
    for part, people in enumerate((trained.people[:6], trained.people[6:])):
        listed = tmp_path / f"people{part}.txt"
        listed.write_text("\n".join(people) + "\n")
        halves.append(tmp_path / f"half{part}.h5")
        filter_cache(trained.cache, halves[-1], FilterSettings(include=[listed]))
    merged = tmp_path / "merged.h5"
    merge_caches(halves, merged)
    with open_cache(trained.cache) as cache:
        training = dict(cache.meta)
    assert training["image_size"] == 64 and training["detector"]["format"] == "caffe"

    out = tmp_path / "model.safetensors"
    command = [sys.executable, "-m", "facetool", "export", trained.checkpoint, "-o", out, "--cache", merged]
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    crop = json.loads((tmp_path / "model.safetensors.json").read_text())["face_crop"]
    for key in ("threshold", "select", "margin", "image_size"):
        assert crop[key] == training[key], key
    assert crop["model_format"] == "caffe" and crop["detector"]["weights"] == training["detector"]["weights"]
    used = crop_config(crop, VerifyConfig().detect)
    assert (used.image_size, used.margin, used.model_format) == (64, training["margin"], "caffe")
