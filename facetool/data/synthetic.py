"""A small synthetic face-like identity data set, so the pipeline can run on a machine with no real data.

The images are drawings, not photographs of people: each identity is a fixed set of traits (face shape, skin
and hair colour, eye spacing, nose and mouth geometry) and each image of it varies pose, scale, lighting,
background and noise. They are written in the LFW directory layout with an LFW-format pairs file, so every
command that accepts LFW accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Traits:
    """What stays the same across every image of one synthetic identity."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eyes: tuple[int, int, int]
    face_aspect: float
    eye_gap: float
    eye_height: float
    eye_size: float
    nose_length: float
    mouth_width: float
    mouth_curve: float
    brow_tilt: float
    hair_volume: float


def random_traits(rng: np.random.Generator) -> Traits:
    """Draw one identity's traits."""
    skin = rng.uniform([60, 90, 130], [170, 200, 245]).astype(int)
    return Traits(
        skin=tuple(int(v) for v in skin),
        hair=tuple(int(v) for v in rng.integers(10, 200, 3)),
        eyes=tuple(int(v) for v in rng.integers(20, 160, 3)),
        face_aspect=float(rng.uniform(1.1, 1.45)),
        eye_gap=float(rng.uniform(0.28, 0.46)),
        eye_height=float(rng.uniform(-0.28, -0.12)),
        eye_size=float(rng.uniform(0.06, 0.11)),
        nose_length=float(rng.uniform(0.12, 0.3)),
        mouth_width=float(rng.uniform(0.22, 0.5)),
        mouth_curve=float(rng.uniform(-0.08, 0.12)),
        brow_tilt=float(rng.uniform(-0.25, 0.25)),
        hair_volume=float(rng.uniform(0.05, 0.35)),
    )


def draw_face(traits: Traits, rng: np.random.Generator, size: int = 250) -> np.ndarray:
    """Draw one BGR image of the identity with random pose, scale, light, background and noise."""
    background = rng.integers(0, 255, 3)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = background
    gradient = np.linspace(-30, 30, size, dtype=np.float32)[None, :, None] * rng.uniform(-1, 1)
    image = np.clip(image.astype(np.float32) + gradient, 0, 255).astype(np.uint8)

    cx = size / 2 + rng.normal(0, size * 0.03)
    cy = size / 2 + rng.normal(0, size * 0.03)
    half_w = size * rng.uniform(0.22, 0.27)
    half_h = half_w * traits.face_aspect
    angle = float(rng.normal(0, 6))

    def point(dx: float, dy: float) -> tuple[int, int]:
        rad = np.deg2rad(angle)
        x = dx * half_w * np.cos(rad) - dy * half_h * np.sin(rad)
        y = dx * half_w * np.sin(rad) + dy * half_h * np.cos(rad)
        return round(cx + x), round(cy + y)

    hair_axes = (round(half_w * (1 + traits.hair_volume)), round(half_h * (1 + traits.hair_volume * 0.7)))
    cv2.ellipse(image, point(0, -0.12), hair_axes, angle, 180, 360, traits.hair, -1, cv2.LINE_AA)
    cv2.ellipse(
        image, point(0, 0), (round(half_w), round(half_h)), angle, 0, 360, traits.skin, -1, cv2.LINE_AA
    )
    eye_r = max(2, round(traits.eye_size * half_w))
    for side in (-1, 1):
        eye = point(side * traits.eye_gap, traits.eye_height)
        cv2.ellipse(image, eye, (eye_r * 2, eye_r), angle, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(image, eye, eye_r, traits.eyes, -1, cv2.LINE_AA)
        brow_a = point(
            side * (traits.eye_gap - 0.12), traits.eye_height - 0.12 - side * traits.brow_tilt * 0.1
        )
        brow_b = point(
            side * (traits.eye_gap + 0.14), traits.eye_height - 0.12 + side * traits.brow_tilt * 0.1
        )
        cv2.line(image, brow_a, brow_b, traits.hair, max(2, eye_r // 2), cv2.LINE_AA)
    nose_top = point(0, traits.eye_height + 0.05)
    nose_tip = point(0.04, traits.eye_height + 0.05 + traits.nose_length)
    shade = tuple(int(c * 0.7) for c in traits.skin)
    cv2.line(image, nose_top, nose_tip, shade, 2, cv2.LINE_AA)
    mouth_y = traits.eye_height + 0.1 + traits.nose_length + 0.18
    left, mid, right = (
        point(-traits.mouth_width / 2, mouth_y),
        point(0, mouth_y + traits.mouth_curve),
        point(traits.mouth_width / 2, mouth_y),
    )
    cv2.polylines(image, [np.array([left, mid, right], np.int32)], False, (60, 40, 150), 3, cv2.LINE_AA)

    light = rng.uniform(0.7, 1.3)
    noisy = image.astype(np.float32) * light + rng.normal(0, 6, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_synthetic_dataset(
    out_dir: Path,
    *,
    identities: int = 24,
    images_per_identity: int = 10,
    pairs_per_fold: int = 20,
    folds: int = 2,
    test_identities: int | None = None,
    seed: int = 0,
    size: int = 250,
) -> Path:
    """Write `out_dir/<identity>/<identity>_NNNN.jpg` and an LFW-format `pairs.txt`; return `out_dir`.

    The pairs file has `folds` folds of `pairs_per_fold` matched then `pairs_per_fold` mismatched pairs, and the
    identities of each fold are disjoint, as in LFW's View 2. The pairs use only the last `test_identities`
    identities (all by default), so the others can train a model that never sees a test person.
    """
    test_identities = identities if test_identities is None else test_identities
    if test_identities > identities or test_identities < 2 * folds or images_per_identity < 2:
        raise ValueError("need at least two test identities per fold and two images per identity")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    names = [f"Synthetic_Person_{i:03d}" for i in range(identities)]
    for name in names:
        traits = random_traits(rng)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(1, images_per_identity + 1):
            cv2.imwrite(str(folder / f"{name}_{k:04d}.jpg"), draw_face(traits, rng, size))

    lines = [f"{folds}\t{pairs_per_fold}"]
    fold_names = np.array_split(np.array(names[identities - test_identities :]), folds)
    for members in fold_names:
        members = list(members)
        for _ in range(pairs_per_fold):
            name = members[rng.integers(len(members))]
            i, j = rng.choice(np.arange(1, images_per_identity + 1), 2, replace=False)
            lines.append(f"{name}\t{i}\t{j}")
        for _ in range(pairs_per_fold):
            a, b = rng.choice(len(members), 2, replace=False)
            i, j = rng.integers(1, images_per_identity + 1, 2)
            lines.append(f"{members[a]}\t{i}\t{members[b]}\t{j}")
    (out_dir / "pairs.txt").write_text("\n".join(lines) + "\n")
    return out_dir
