"""LFW pairs files, parsed strictly: a malformed line stops with the file and the line number.

Two layouts exist. View 2 (`pairs.txt`): a header `folds<TAB>pairs_per_fold`, then per fold, in file order,
`pairs_per_fold` matched lines `name i j` followed by `pairs_per_fold` mismatched lines
`name1 i name2 j`; folds are these contiguous blocks. View 1 (`pairsDevTrain.txt`, `pairsDevTest.txt`): a
single count N, then N matched and N mismatched lines, no folds. Image i of name is `name/name_{i:04d}.jpg`,
relative to the data directory (the way face caches store paths).

A third, for one's own data: CSV with the header `path1,path2,same` and an optional `fold` column, one pair a
row, paths relative to the data directory (`folder/image`, POSIX separators), `same` 1/0 (or true/false), folds
numbered from 1 (`dataset import` of a verification pack writes this, with the pack's 10 contiguous folds).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetool.errors import FacetoolError, PairsError
from facetool.files import read_text_limited

MAX_LISTED = 20
MAX_PAIRS_BYTES = 64 * 1024 * 1024


def image_path(name: str, index: int) -> str:
    """Relative POSIX path of image `index` (1-based) of identity `name`."""
    return f"{name}/{name}_{index:04d}.jpg"


@dataclass(frozen=True)
class Pair:
    """One line of a pairs file: two image paths, whether they show the same person, and the line number."""

    path1: str
    path2: str
    issame: bool
    line: int


@dataclass(frozen=True)
class PairsFile:
    """The pairs of one file in file order; `n_folds` is None for a file without folds (View 1)."""

    path: Path
    pairs: tuple[Pair, ...]
    n_folds: int | None
    pairs_per_fold: int
    folds: tuple[int, ...] | None = (
        None  # a CSV's own fold column (1-based), else folds are contiguous blocks
    )

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def issame(self) -> np.ndarray:
        return np.array([p.issame for p in self.pairs], dtype=bool)

    @property
    def fold_ids(self) -> np.ndarray | None:
        """Fold of each pair (contiguous blocks of 2 * pairs_per_fold), or None without folds."""
        if self.folds is not None:
            return np.array(self.folds, dtype=np.int64) - 1
        if self.n_folds is None:
            return None
        return np.arange(len(self.pairs)) // (2 * self.pairs_per_fold)

    @property
    def images(self) -> list[str]:
        """The distinct image paths named by the pairs, sorted."""
        return sorted({p.path1 for p in self.pairs} | {p.path2 for p in self.pairs})

    @property
    def people(self) -> set[str]:
        """Every identity the pairs name."""
        return {path.split("/", 1)[0] for path in self.images}

    def identities(self, fold: int) -> set[str]:
        """Identities appearing in fold `fold` (all pairs when the file has no folds)."""
        ids = self.fold_ids
        chosen = self.pairs if ids is None else [p for p, f in zip(self.pairs, ids, strict=True) if f == fold]
        return {path.split("/", 1)[0] for p in chosen for path in (p.path1, p.path2)}


def _positive_int(text: str, what: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PairsError(f"{where}: {what} {text!r} is not an integer") from None
    if value < 1:
        raise PairsError(f"{where}: {what} {value} must be at least 1")
    return value


def _name(text: str, where: str) -> str:
    if "/" in text or "\\" in text or text in (".", ".."):
        raise PairsError(f"{where}: {text!r} is not an identity name (folder names hold no path separators)")
    return text


def _parse_header(fields: list[str], where: str) -> tuple[int | None, int]:
    if len(fields) == 2:
        return _positive_int(fields[0], "number of folds", where), _positive_int(
            fields[1], "pairs per fold", where
        )
    if len(fields) == 1:
        return None, _positive_int(fields[0], "number of pairs", where)
    raise PairsError(
        f"{where}: header must be `folds<TAB>pairs_per_fold` (View 2) or `pairs` (View 1), "
        f"got {len(fields)} fields"
    )


def _parse_pair(fields: list[str], issame: bool, line: int, where: str) -> Pair:
    if issame:
        if len(fields) != 3:
            raise PairsError(f"{where}: expected 3 fields `name i j` for a matched pair, got {len(fields)}")
        name = _name(fields[0], where)
        i = _positive_int(fields[1], "image number", where)
        j = _positive_int(fields[2], "image number", where)
        return Pair(image_path(name, i), image_path(name, j), True, line)
    if len(fields) != 4:
        raise PairsError(
            f"{where}: expected 4 fields `name1 i name2 j` for a mismatched pair, got {len(fields)}"
        )
    name1, name2 = _name(fields[0], where), _name(fields[2], where)
    i = _positive_int(fields[1], "image number", where)
    j = _positive_int(fields[3], "image number", where)
    return Pair(image_path(name1, i), image_path(name2, j), False, line)


def parse_pairs(lines: Iterable[str], source: str | Path = "<pairs>") -> PairsFile:
    """Parse the lines of a pairs file; `source` names it in errors. Trailing blank lines are allowed."""
    rows = [line.rstrip("\r\n") for line in lines]
    while rows and not rows[-1].strip():
        rows.pop()
    if not rows:
        raise PairsError(f"{source}: empty pairs file")
    n_folds, per_block = _parse_header(rows[0].split(), f"{source}:1")
    blocks = n_folds or 1
    expected = blocks * 2 * per_block
    pairs = []
    for number, text in enumerate(rows[1:], start=2):
        where = f"{source}:{number}"
        index = number - 2
        if index >= expected:
            raise PairsError(
                f"{where}: more pair lines than the header announces ({expected}); this line is extra"
            )
        fields = text.split()
        if not fields:
            raise PairsError(f"{where}: blank line inside the pairs")
        issame = (index % (2 * per_block)) < per_block
        pairs.append(_parse_pair(fields, issame, number, where))
    if len(pairs) != expected:
        layout = f"{n_folds} folds x 2 x {per_block}" if n_folds else f"2 x {per_block}"
        raise PairsError(
            f"{source}:{len(rows) + 1}: file ends after {len(pairs)} pairs, the header announces "
            f"{expected} ({layout})"
        )
    return PairsFile(path=Path(source), pairs=tuple(pairs), n_folds=n_folds, pairs_per_fold=per_block)


CSV_HEADER = ("path1", "path2", "same")
_TRUTH = {"1": True, "0": False, "true": True, "false": False}


def _csv_path(text: str, where: str) -> str:
    text = text.strip()
    parts = text.split("/")
    if text.startswith("/") or "\\" in text or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise PairsError(
            f"{where}: {text!r} must be a relative `folder/image` path inside the data directory"
        )
    return text


def parse_csv_pairs(lines: list[str], source: str | Path = "<pairs>") -> PairsFile:
    """Parse a CSV pairs file (`path1,path2,same[,fold]`, module doc)."""
    header = [field.strip().lower() for field in lines[0].split(",")] if lines else []
    if tuple(header[:3]) != CSV_HEADER or header[3:] not in ([], ["fold"]):
        raise PairsError(f"{source}:1: CSV header must be `path1,path2,same` or `path1,path2,same,fold`")
    pairs, folds = [], []
    for number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        where = f"{source}:{number}"
        fields = text.split(",")
        if len(fields) != len(header):
            raise PairsError(f"{where}: expected {len(header)} comma-separated fields, got {len(fields)}")
        same = _TRUTH.get(fields[2].strip().lower())
        if same is None:
            raise PairsError(f"{where}: same must be 1, 0, true or false, got {fields[2].strip()!r}")
        pairs.append(Pair(_csv_path(fields[0], where), _csv_path(fields[1], where), same, number))
        if len(header) == 4:
            folds.append(_positive_int(fields[3].strip(), "fold", where))
    if not pairs:
        raise PairsError(f"{source}: no pairs")
    matched = sum(p.issame for p in pairs)
    n_folds = max(folds) if folds else None
    return PairsFile(Path(source), tuple(pairs), n_folds, matched, tuple(folds) if folds else None)


def read_pairs(path: str | Path) -> PairsFile:
    """Read and parse a pairs file (at most `MAX_PAIRS_BYTES`, so an endless stream stops at once); a
    missing, unreadable, oversized or non-UTF-8 file is a PairsError naming it."""
    path = Path(path)
    try:
        text = read_text_limited(path, limit=MAX_PAIRS_BYTES, what="pairs file")
    except FacetoolError as exc:
        if not path.exists():
            raise PairsError(f"{path}: pairs file not found") from None
        reason = str(exc).removeprefix(str(path)).lstrip(":").strip()
        raise PairsError(f"{path}: cannot read pairs file ({reason})") from None
    lines = text.splitlines()
    if path.suffix.lower() == ".csv" or (lines and lines[0].startswith("path1,")):
        return parse_csv_pairs(lines, path)
    return parse_pairs(lines, path)


def check_images(pairs: PairsFile, available: Collection[str], where: str) -> None:
    """Stop with the list of images named by `pairs` but absent from `available` (never skip a pair)."""
    missing = [path for path in pairs.images if path not in available]
    if missing:
        shown = ", ".join(missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise PairsError(
            f"{pairs.path}: {len(missing)} image(s) of the pairs are missing from {where}: {shown}{more}"
        )
