"""Faces resized once: bit for bit what resizing every round gives, made only for a preloaded source that needs
a resize and has the memory for it, with a log line that says which way a run went."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cache_helpers import some_identities, write_people_cache

from facetool.config.train import AugmentConfig
from facetool.data.augment import CHUNK, Augmenter
from facetool.data.choose import open_face_source
from facetool.data.resized import resize_once

SIZE = 80
PLAIN = AugmentConfig(random_crop=False, flip=False, color_jitter=False)
EVERYTHING = AugmentConfig(crop_scale=0.8, brightness=0.3, contrast=0.3, saturation=0.3)


@pytest.fixture(scope="module")
def cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JPEG cache of real LFW crops at 80 px: 50 people, 6 images each (over one resize chunk)."""
    people = some_identities(lfw_dir, 50, min_images=6)
    return write_people_cache(lfw_dir, tmp_path_factory.mktemp("resized") / "faces.h5", people, 6, SIZE)


@pytest.mark.parametrize(("augment", "image_size", "working"), [(PLAIN, 32, 32), (EVERYTHING, 32, 40)])
def test_rounds_from_faces_resized_once_equal_rounds_resized_each_time(
    cache: Path, augment: AugmentConfig, image_size: int, working: int
) -> None:
    source, _ = open_face_source(cache, mode="preload")
    with source:
        augmenter = Augmenter(augment, image_size)
        resized, note = resize_once(source, augmenter)
        assert resized is not None and len(resized) == len(source) > CHUNK
        assert resized.faces.shape[1:] == (3, working, working) and resized.faces.dtype == torch.float32
        gib = len(source) * 3 * working * working * 4 / (1 << 30)
        assert note == f"faces resized once to {working} px: {gib:.2f} GiB of float faces in host memory"
        rng = np.random.default_rng(0)
        for seed in range(3):
            rows = rng.choice(len(source), size=150, replace=True)
            once = augmenter.from_working(resized.fetch(rows, "cpu"), torch.Generator().manual_seed(seed))
            every = augmenter(source.fetch(rows, "cpu"), torch.Generator().manual_seed(seed))
            assert torch.equal(once, every) and once.stride() == every.stride()


def test_float_faces_that_would_take_over_half_the_memory_are_not_made(cache: Path) -> None:
    source, _ = open_face_source(cache, mode="preload")
    with source:
        augmenter = Augmenter(PLAIN, 32)
        need = len(source) * 3 * 32 * 32 * 4
        resized, note = resize_once(source, augmenter, available=2 * need - 1)
        assert resized is None
        assert note.startswith("faces resized to 32 px in every round: ") and "more than half" in note
        resized, _ = resize_once(source, augmenter, available=2 * need)
        assert resized is not None and resized.nbytes == need


def test_streamed_switched_off_or_same_size_sources_resize_every_round(cache: Path) -> None:
    streamed, _ = open_face_source(cache, mode="stream", workers=1)
    with streamed:
        resized, note = resize_once(streamed, Augmenter(PLAIN, 32))
        assert resized is None and note == "faces resized to 32 px in every round: they are streamed"
    source, _ = open_face_source(cache, mode="preload")
    with source:
        resized, note = resize_once(source, Augmenter(PLAIN, 32), enabled=False)
        assert resized is None and note == "faces resized to 32 px in every round: resizing once is off"
        resized, note = resize_once(source, Augmenter(PLAIN, SIZE))
        assert resized is None and note == f"faces used at the cache's {SIZE} px: nothing to resize"


def test_faces_are_decoded_and_resized_on_their_first_fetch_only(cache: Path) -> None:
    """Nothing is decoded before a round asks; a fetch resizes its new rows only, and the faces filled round by
    round equal the faces resized all at once, bit for bit and in the same layout."""
    source, _ = open_face_source(cache, mode="preload")
    with source:
        augmenter = Augmenter(EVERYTHING, 32)
        lazy, _ = resize_once(source, augmenter)
        eager, _ = resize_once(source, augmenter)
        assert lazy is not None and eager is not None and lazy.resized_rows == 0
        everything = eager.faces
        assert eager.resized_rows == len(source)
        rng = np.random.default_rng(5)
        seen: set[int] = set()
        for _ in range(3):
            rows = rng.choice(len(source), size=40, replace=True)
            seen |= set(rows.tolist())
            got = lazy.fetch(rows, "cpu")
            assert lazy.resized_rows == len(seen) < len(source)
            assert torch.equal(got, everything[torch.as_tensor(rows)])
            assert got.stride() == eager.fetch(rows, "cpu").stride()
        assert torch.equal(lazy.faces, everything) and lazy.resized_rows == len(source)
