"""On-device augmentation: exact identity when switched off, seeded, geometric and colour changes as set."""

from __future__ import annotations

import numpy as np
import torch

from facetool.config.train import AugmentConfig
from facetool.data.augment import Augmenter, prepare
from facetool.data.transforms import to_input

OFF = AugmentConfig(random_crop=False, flip=False, color_jitter=False)


def faces(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_everything_off_equals_to_input():
    x = faces()
    assert torch.allclose(Augmenter(OFF, 32)(x), to_input(x), atol=1e-5)
    assert torch.equal(prepare(x, 32), to_input(x))


def test_resize_when_image_size_differs():
    x = faces(size=40)
    out = Augmenter(OFF, 32)(x)
    assert out.shape == (6, 3, 32, 32)
    assert torch.allclose(out, prepare(x, 32), atol=1e-4)


def test_a_larger_cache_face_is_resized_as_evaluation_resizes_it():
    x = faces(n=40, size=80)
    out = Augmenter(OFF.model_copy(update={"flip": True}), 32)(x, torch.Generator().manual_seed(0))
    evaluated = prepare(x, 32)
    for o, e in zip(out, evaluated, strict=True):
        assert torch.allclose(o, e, atol=1e-5) or torch.allclose(o, e.flip(-1), atol=1e-5)


def test_a_full_size_crop_of_a_larger_face_equals_the_evaluation_resize():
    x = faces(n=8, size=80)
    crop = OFF.model_copy(update={"random_crop": True, "crop_scale": 1.0})
    assert torch.allclose(Augmenter(crop, 32)(x, torch.Generator().manual_seed(0)), prepare(x, 32), atol=1e-5)


def test_flip_mirrors_about_half_the_images():
    x = faces(n=200)
    out = Augmenter(OFF.model_copy(update={"flip": True}), 32)(x, torch.Generator().manual_seed(0))
    base = to_input(x)
    flipped = torch.tensor([torch.allclose(o, b.flip(-1), atol=1e-5) for o, b in zip(out, base, strict=True)])
    same = torch.tensor([torch.allclose(o, b, atol=1e-5) for o, b in zip(out, base, strict=True)])
    assert bool((flipped ^ same).all())
    assert 70 < int(flipped.sum()) < 130


def test_seeded_and_in_range_with_everything_on():
    x = faces()
    augment = Augmenter(AugmentConfig(brightness=0.5, contrast=0.5, saturation=0.5), 32)
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= -127.5 / 128 - 1e-6 and float(a.max()) <= 127.5 / 128 + 1e-6


def test_crop_zooms_in():
    size = 64
    ramp = np.tile(np.linspace(0, 255, size, dtype=np.float32), (size, 1)).astype(np.uint8)
    x = torch.from_numpy(np.repeat(ramp[None, :, :, None], 3, axis=3).repeat(50, 0))
    out = Augmenter(OFF.model_copy(update={"random_crop": True, "crop_scale": 0.6}), size)(
        x, torch.Generator().manual_seed(0)
    )
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    full = to_input(x)[0, 0, 0, -1] - to_input(x)[0, 0, 0, 0]
    assert bool((span < full - 1e-3).all())
    assert float(span.min()) > 0.55 * float(full)


def test_a_round_larger_than_a_chunk_is_augmented_as_one_batch():
    """Float conversion goes CHUNK faces at a time; the faces of later chunks are treated like the first."""
    from facetool.data.augment import CHUNK

    x = faces(n=CHUNK + 37, size=48, seed=3)
    out = Augmenter(OFF, 32)(x)
    assert out.shape == (CHUNK + 37, 3, 32, 32)
    assert torch.allclose(out, prepare(x, 32), atol=1e-4)
    assert torch.allclose(out[CHUNK:], Augmenter(OFF, 32)(x[CHUNK:]), atol=0)


def test_augmenting_a_round_of_large_crops_never_holds_it_whole_as_float():
    """A round of 1024 160 px crops is 315 MB as float32; in a fresh process, augmenting it to 64 px must add
    less than that to the memory held before (converting it whole made training RSS 2.7 GB at any cache size)."""
    import subprocess
    import sys

    code = """
import torch
from facetool.config.train import AugmentConfig
from facetool.data.augment import Augmenter
faces = torch.randint(0, 256, (1024, 160, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
augment = Augmenter(AugmentConfig(), 64)
augment(faces[:8], torch.Generator().manual_seed(0))
def status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM, the peak, to the memory held now
before = status("VmRSS")
out = augment(faces, torch.Generator().manual_seed(0))
print(status("VmHWM") - before)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) * 1024 < 1024 * 3 * 160 * 160 * 4
