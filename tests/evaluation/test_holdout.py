"""Threshold pairs among held-out people: who is held out, which pairs are drawn, and the file they make."""

from __future__ import annotations

from collections import Counter

import pytest

from facetool.errors import UsageError
from facetool.evaluation.holdout import hold_out_pairs, images_by_person
from facetool.evaluation.pairs import image_path, parse_pairs


def lfw_like(shared) -> dict[str, list[int]]:
    """Image numbers per person of the real LFW folder listing (names and counts as they are)."""
    folder = shared / "lfw" / "lfw-deepfunneled"
    return images_by_person(f"{d.name}/{f.name}" for d in sorted(folder.iterdir()) for f in d.glob("*.jpg"))


def test_images_by_person_reads_lfw_paths_and_skips_others() -> None:
    paths = ["A_B/A_B_0002.jpg", "A_B/A_B_0001.jpg", "C/C_0010.jpg", "C/D_0001.jpg", "x.jpg", "C/C_1.jpg"]
    assert images_by_person(paths) == {"A_B": [1, 2], "C": [10]}


def test_pairs_are_among_the_held_out_people_and_balanced(shared) -> None:
    images = lfw_like(shared)
    candidates = {name for name, numbers in images.items() if len(numbers) >= 2}
    held = hold_out_pairs(images, 0.1, 300, seed=0)
    assert len(held.people) == round(0.1 * len(candidates)) and set(held.people) <= candidates
    assert len(held.matched) == len(held.mismatched) == 300
    people = set(held.people)
    for name, i, j in held.matched:
        assert name in people and i < j and {i, j} <= set(images[name])
    for a, i, b, j in held.mismatched:
        assert a != b and {a, b} <= people and i in images[a] and j in images[b]
    per_person = Counter(name for name, _, _ in held.matched)
    assert max(per_person.values()) - min(per_person.values()) <= 1, "every person gives as many pairs"
    parsed = parse_pairs(held.to_text().splitlines(), "held.txt")
    assert parsed.n_folds is None and len(parsed) == 600 and parsed.people <= people
    assert [(p.path1, p.path2) for p in parsed.pairs[:300]] == [
        (image_path(n, i), image_path(n, j)) for n, i, j in held.matched
    ]


def test_the_seed_decides_the_draw(shared) -> None:
    images = lfw_like(shared)
    assert hold_out_pairs(images, 0.05, 50, seed=3) == hold_out_pairs(images, 0.05, 50, seed=3)
    assert hold_out_pairs(images, 0.05, 50, seed=3).people != hold_out_pairs(images, 0.05, 50, seed=4).people


def test_too_few_people_to_hold_out() -> None:
    images = {"A": [1, 2], "B": [1, 2], "C": [1]}
    with pytest.raises(UsageError, match="2 people with two or more images give 1 to hold out"):
        hold_out_pairs(images, 0.5, 10, seed=0)
    with pytest.raises(UsageError, match="must lie between 0 and 1"):
        hold_out_pairs(images, 1.0, 10, seed=0)
    assert hold_out_pairs(images, 0.99, 4, seed=0).people == ["A", "B"]
