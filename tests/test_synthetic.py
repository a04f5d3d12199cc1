"""The synthetic demo data set: LFW layout, a valid pairs file, identities that differ."""

from pathlib import Path

import cv2
import numpy as np

from facetool.data.synthetic import write_synthetic_dataset


def test_layout_and_pairs(tmp_path: Path):
    root = write_synthetic_dataset(
        tmp_path / "syn", identities=8, images_per_identity=3, pairs_per_fold=5, folds=2
    )
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(folders) == 8
    assert all(len(list(f.glob("*.jpg"))) == 3 for f in folders)
    lines = (root / "pairs.txt").read_text().splitlines()
    assert lines[0] == "2\t5" and len(lines) == 1 + 2 * 2 * 5
    fold_people = []
    for fold in range(2):
        block = [line.split("\t") for line in lines[1 + fold * 10 : 11 + fold * 10]]
        assert all(len(fields) == 3 for fields in block[:5]) and all(len(fields) == 4 for fields in block[5:])
        people = {fields[0] for fields in block} | {fields[2] for fields in block[5:]}
        for fields in block:
            name, index = fields[0], int(fields[1])
            assert (root / name / f"{name}_{index:04d}.jpg").is_file()
        fold_people.append(people)
    assert not fold_people[0] & fold_people[1]


def test_pairs_can_be_limited_to_test_identities(tmp_path: Path):
    root = write_synthetic_dataset(
        tmp_path / "syn", identities=10, images_per_identity=2, pairs_per_fold=4, folds=2, test_identities=4
    )
    named = set()
    for line in (root / "pairs.txt").read_text().splitlines()[1:]:
        fields = line.split("\t")
        named |= {fields[0], fields[-2]} if len(fields) == 4 else {fields[0]}
    assert named == {f"Synthetic_Person_{i:03d}" for i in range(6, 10)}


def test_same_seed_same_images_and_identities_differ(tmp_path: Path):
    a = write_synthetic_dataset(
        tmp_path / "a", identities=4, images_per_identity=2, pairs_per_fold=2, folds=2
    )
    b = write_synthetic_dataset(
        tmp_path / "b", identities=4, images_per_identity=2, pairs_per_fold=2, folds=2
    )
    name = "Synthetic_Person_000"
    first = cv2.imread(str(a / name / f"{name}_0001.jpg"))
    assert np.array_equal(first, cv2.imread(str(b / name / f"{name}_0001.jpg")))
    other = cv2.imread(str(a / "Synthetic_Person_001" / "Synthetic_Person_001_0001.jpg"))
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5
