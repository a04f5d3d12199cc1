"""A small real LFW folder (symlinks into the shared one) for the protocol's tests and its benchmark's smoke test."""

from __future__ import annotations

from pathlib import Path

PER_FOLD = 3


def small(lfw_dir: Path, name: str) -> bool:
    return 2 <= len(list((lfw_dir / name).glob("*.jpg"))) <= 4


def names_of(line: str) -> set[str]:
    fields = line.split("\t")
    return {fields[0], fields[2]} if len(fields) == 4 else {fields[0]}


def pick(lines: list[str], lfw_dir: Path, count: int) -> list[str]:
    """The first `count` matched and `count` mismatched lines whose people have 2-4 images."""
    matched = [line for line in lines if len(line.split("\t")) == 3 and small(lfw_dir, line.split("\t")[0])]
    mismatched = [
        line
        for line in lines
        if len(line.split("\t")) == 4 and all(small(lfw_dir, n) for n in names_of(line))
    ]
    return matched[:count] + mismatched[:count]


def make_mini_lfw(root: Path, lfw_dir: Path, shared: Path) -> Path:
    """`root`: lfw-deepfunneled with the images of 2 folds of pairs.txt, small View 1 files, 8 more people and
    3 with a single image."""
    lines = (shared / "lfw" / "pairs.txt").read_text().splitlines()
    folds = [pick(lines[1 + 600 * k : 1 + 600 * (k + 1)], lfw_dir, PER_FOLD) for k in range(2)]
    root.mkdir()
    (root / "pairs.txt").write_text("\n".join([f"2\t{PER_FOLD}", *folds[0], *folds[1]]) + "\n")
    (root / "pairsDevTrain.txt").write_text("\n".join([str(PER_FOLD), *folds[0]]) + "\n")
    (root / "pairsDevTest.txt").write_text("\n".join([str(PER_FOLD), *folds[1]]) + "\n")
    named = {n for fold in folds for line in fold for n in names_of(line)}
    people = sorted(lfw_dir.iterdir())
    extra = [d.name for d in people[::50] if small(lfw_dir, d.name) and d.name not in named]
    singles = [d.name for d in people[::50] if len(list(d.glob("*.jpg"))) == 1 and d.name not in named]
    for name in sorted(named) + extra[:8] + singles[:3]:
        (root / "lfw-deepfunneled" / name).mkdir(parents=True)
        for image in (lfw_dir / name).glob("*.jpg"):
            (root / "lfw-deepfunneled" / name / image.name).symlink_to(image)
    return root
