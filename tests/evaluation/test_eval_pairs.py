"""Pairs files: strict parsing with line numbers, and the real LFW protocol files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetool.errors import PairsError
from facetool.evaluation.pairs import check_images, image_path, read_pairs

GOOD_VIEW2 = "2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tC\t1\nB\t2\tD\t4\nE\t1\t2\nF\t3\t4\nE\t1\tG\t1\nF\t2\tH\t1\n"


def write(tmp_path: Path, text: str, name: str = "pairs.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_view2_layout(tmp_path):
    pairs = read_pairs(write(tmp_path, GOOD_VIEW2))
    assert len(pairs) == 8 and pairs.n_folds == 2 and pairs.pairs_per_fold == 2
    np.testing.assert_array_equal(pairs.issame, [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pairs.fold_ids, [0, 0, 0, 0, 1, 1, 1, 1])
    first, third = pairs.pairs[0], pairs.pairs[2]
    assert (first.path1, first.path2, first.line) == ("A/A_0001.jpg", "A/A_0002.jpg", 2)
    assert (third.path1, third.path2, third.issame) == ("A/A_0001.jpg", "C/C_0001.jpg", False)
    assert pairs.images[:3] == ["A/A_0001.jpg", "A/A_0002.jpg", "B/B_0001.jpg"]
    assert pairs.identities(1) == {"E", "F", "G", "H"}


def test_view1_layout_has_no_folds(tmp_path):
    pairs = read_pairs(write(tmp_path, "2\nA 1 2\nB 10 11\nA 1 C 1\nB 2 D 4\n\n\n"))
    assert pairs.n_folds is None and pairs.fold_ids is None
    np.testing.assert_array_equal(pairs.issame, [1, 1, 0, 0])
    assert pairs.pairs[1].path2 == "B/B_0011.jpg"


def test_image_path_pads_to_four_digits():
    assert image_path("George_W_Bush", 12) == "George_W_Bush/George_W_Bush_0012.jpg"
    assert image_path("X", 12345) == "X/X_12345.jpg"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"pairs.txt: empty pairs file"),
        ("10 300 5\n", r"pairs.txt:1: header must be"),
        ("ten\n", r"pairs.txt:1: number of pairs 'ten' is not an integer"),
        ("2 0\n", r"pairs.txt:1: pairs per fold 0 must be at least 1"),
        ("1 2\nA 1 2\nB 1\nA 1 C 1\nB 2 D 4\n", r"pairs.txt:3: expected 3 fields `name i j`.*got 2"),
        ("1 2\nA 1 2\nB 1 3\nA 1 C\nB 2 D 4\n", r"pairs.txt:4: expected 4 fields `name1 i name2 j`.*got 3"),
        ("1 2\nA 1 2\nB 1 x\nA 1 C 1\nB 2 D 4\n", r"pairs.txt:3: image number 'x' is not an integer"),
        ("1 2\nA 1 2\nB 1 2\nA 1 C 1.5\nB 2 D 4\n", r"pairs.txt:4: image number '1.5' is not an integer"),
        ("1 2\nA 1 2\nB 1 2\nA 0 C 1\nB 2 D 4\n", r"pairs.txt:4: image number 0 must be at least 1"),
        ("1 2\nA 1 2\nB 1 2\nA 1 C 1\n", r"pairs.txt:5: file ends after 3 pairs, the header announces 4"),
        ("1 2\nA 1 2\nB 1 2\nA 1 C 1\nB 2 D 4\nE 1 2\n", r"pairs.txt:6: more pair lines than the header"),
        ("1 2\nA 1 2\n\nA 1 C 1\nB 2 D 4\n", r"pairs.txt:3: blank line inside the pairs"),
        ("1 2\nA 1 2\n../x 1 2\nA 1 C 1\nB 2 D 4\n", r"pairs.txt:3: '../x' is not an identity name"),
        ("2\nA 1 2\nB 1 3\nA 1 C 1\n", r"pairs.txt:5: file ends after 3 pairs, the header announces 4"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PairsError, match=message):
        read_pairs(path)


def test_matched_line_in_the_mismatched_block_is_reported(tmp_path):
    text = GOOD_VIEW2.replace("E\t1\tG\t1", "E\t1\t2")
    with pytest.raises(PairsError, match=r"pairs.txt:8: expected 4 fields"):
        read_pairs(write(tmp_path, text))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(PairsError, match=r"nope.txt: pairs file not found"):
        read_pairs(tmp_path / "nope.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PairsError, match=r"binary.txt: cannot read pairs file"):
        read_pairs(binary)


def test_missing_images_are_all_listed(tmp_path):
    pairs = read_pairs(write(tmp_path, GOOD_VIEW2))
    available = set(pairs.images) - {"D/D_0004.jpg", "H/H_0001.jpg"}
    with pytest.raises(PairsError, match=r"2 image\(s\).*missing from my.h5: D/D_0004.jpg, H/H_0001.jpg"):
        check_images(pairs, available, "my.h5")
    check_images(pairs, set(pairs.images), "my.h5")


def test_real_view2_pairs(shared):
    pairs = read_pairs(shared / "lfw" / "pairs.txt")
    assert len(pairs) == 6000 and pairs.n_folds == 10 and pairs.pairs_per_fold == 300
    assert len(pairs.images) == 7701
    assert np.bincount(pairs.fold_ids).tolist() == [600] * 10
    for k in range(10):
        in_fold = pairs.issame[pairs.fold_ids == k]
        assert in_fold[:300].all() and not in_fold[300:].any()
    folds = [pairs.identities(k) for k in range(10)]
    for a in range(10):
        for b in range(a + 1, 10):
            assert not folds[a] & folds[b], f"folds {a} and {b} share identities"
    lfw = shared / "lfw" / "lfw-deepfunneled"
    assert all((lfw / p).is_file() for p in pairs.images)


def test_real_view1_pairs(shared):
    train = read_pairs(shared / "lfw" / "pairsDevTrain.txt")
    test = read_pairs(shared / "lfw" / "pairsDevTest.txt")
    assert (len(train), len(test)) == (2200, 1000)
    assert train.issame.sum() == 1100 and test.issame.sum() == 500
    assert not train.identities(0) & test.identities(0)
