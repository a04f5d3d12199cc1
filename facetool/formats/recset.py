"""An insightface-style RecordIO training set: `train.rec`, its `.idx`, `property`, and which layout it has.

Files of three writers are found in the wild, in two layouts (docs/design.md, "Field formats"):

- header record: record 0 has flag > 0, an empty body and `label[0]` = one past the last image key; the
  images are keys 1 .. label[0] - 1, the records after them are per-identity ranges (insightface's
  RecBuilder, the older face2rec2.py);
- flat: every record is an image (`python -m mxnet.tools.im2rec`, arcface_torch's route for custom data).

An image's class is its scalar label, or `label[0]` for a list label (face2rec2's `[class, aligned]`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetool.formats.recordio import (
    HEADER,
    ImageRecord,
    PayloadBlock,
    RecordIOError,
    RecordReader,
    read_index_arrays,
    unpack,
)

HEADER_LAYOUT = "header record"
FLAT_LAYOUT = "flat"


def rec_files(source: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """The `.rec` a source names (the file or its `.idx`, or `train.rec` / the only `.rec` of a folder) and its
    `.idx`."""
    source = Path(source)
    if source.is_dir():
        candidates = sorted(source.glob("*.rec"))
        named = source / "train.rec"
        if named.is_file():
            rec = named
        elif len(candidates) == 1:
            rec = candidates[0]
        else:
            found = ", ".join(p.name for p in candidates) or "none"
            raise RecordIOError(
                f"{source}: expected train.rec or a single .rec file in the folder (found {found})"
            )
    elif source.is_file():
        rec = source.with_suffix(".rec") if source.suffix == ".idx" else source
    else:
        raise RecordIOError(f"{source}: no such file or folder")
    idx = rec.with_suffix(".idx")
    return rec, (idx if idx.is_file() else None)


def read_property(path: Path) -> tuple[int, int, int] | None:
    """`classes,height,width` from the first line of a `property` file; None when there is none."""
    if not path.is_file():
        return None
    try:
        first = path.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        fields = [int(v) for v in first[0].strip().split(",")] if first else []
    except (OSError, ValueError):
        fields = []
    if len(fields) != 3:
        raise RecordIOError(f"{path}: line 1: expected `classes,height,width`")
    return fields[0], fields[1], fields[2]


def image_class(record: ImageRecord, where: str) -> int:
    """The class of an image record: its scalar label, or the first value of a list label."""
    value = record.label_values[0] if record.label_values else -1.0
    if value < 0 or value != int(value):
        raise RecordIOError(f"{where}: label {record.label!r} is not a class number")
    return int(value)


@dataclass(frozen=True)
class ImageEntry:
    """Where an image record lies and what class it has; the bytes are read when needed."""

    key: int
    offset: int
    label: int
    nbytes: int


@dataclass(frozen=True)
class ImageColumns:
    """Every image record of a set in key order, without its bytes: where its image lies (`starts`: file position
    of the image bytes, -1 for a multi-part record whose bytes are not contiguous) and the part header word
    (`lrecords`) seen, so a copy can tell that the file changed meanwhile."""

    keys: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    starts: np.ndarray
    lrecords: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


ImageCheck = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]
_HEAD = np.dtype([("flag", "<u4"), ("label", "<f4"), ("id", "<u8"), ("id2", "<u8")])
_CLASS_LIMIT = 1 << 31  # larger class numbers are left to the record-by-record path


class RecordSet:
    """An opened RecordIO training set; `images()` lists its image records without keeping their bytes."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.rec, self.idx = rec_files(source)
        self.property = read_property(self.rec.parent / "property")
        self.reader = RecordReader(self.rec)
        try:
            if self.idx is not None:
                self.keys, self.offsets = read_index_arrays(self.idx, self.reader.size)
            else:
                pairs = self._keys_from_headers()
                self.keys = np.array([k for k, _ in pairs], np.int64)
                self.offsets = np.array([o for _, o in pairs], np.int64)
            self._by_key = np.argsort(self.keys, kind="stable")
            self.layout, self._image_keys = self._detect_layout()
        except BaseException:
            self.reader.close()
            raise

    def _keys_from_headers(self) -> list[tuple[int, int]]:
        """(key, offset) of a `.rec` without `.idx`: the key is each record's header id, as im2rec and
        RecBuilder write it (id = key), so a header record written last is still key 0."""
        out: list[tuple[int, int]] = []
        seen: set[int] = set()
        for position, offset in self.reader.scan():
            key = self.reader.read_record(offset, f"{position} (no .idx)").id
            if key in seen:
                raise RecordIOError(
                    f"{self.rec}: record {position}: id {key} appears twice (and there is no .idx)"
                )
            seen.add(key)
            out.append((key, offset))
        return out

    @property
    def index(self) -> list[tuple[int, int]]:
        """(key, offset) of every record, in `.idx` order (file order without one)."""
        return list(zip(self.keys.tolist(), self.offsets.tolist(), strict=True))

    def _offset_of(self, key: int) -> int | None:
        at = int(np.searchsorted(self.keys, key, sorter=self._by_key))
        if at < len(self.keys) and self.keys[self._by_key[at]] == key:
            return int(self.offsets[self._by_key[at]])
        return None

    def _detect_layout(self) -> tuple[str, range | None]:
        head_offset = self._offset_of(0)
        if head_offset is not None:
            head = self.reader.read_record(head_offset, 0)
            if head.flag > 0 and not head.image:
                end = int(head.label_values[0])
                if end < 1:
                    raise RecordIOError(
                        f"{self.rec}: key 0: header record label {head.label!r} names no images"
                    )
                missing = [key for key in (1, end - 1) if self._offset_of(key) is None]
                if missing:
                    raise RecordIOError(
                        f"{self.rec}: key {missing[0]}: named by the header record (images 1..{end - 1}) "
                        f"but absent from {self.idx}"
                    )
                return HEADER_LAYOUT, range(1, end)
        return FLAT_LAYOUT, None

    def read(self, key: int) -> ImageRecord:
        """The record of `key`."""
        offset = self._offset_of(key)
        if offset is None:
            raise RecordIOError(f"{self.rec}: key {key}: not in the index")
        return self.reader.read_record(offset, key)

    def image_key_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys and offsets of every image record, in key order."""
        sorted_keys = self.keys[self._by_key]
        if self._image_keys is None:
            return sorted_keys, self.offsets[self._by_key]
        # a key missing from 1..n+1 exists when the header names more images than the index holds
        wanted = np.arange(1, min(self._image_keys.stop, len(self.keys) + 2), dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_keys, wanted), max(len(sorted_keys) - 1, 0))
        absent = np.flatnonzero(sorted_keys[at] != wanted) if len(sorted_keys) else np.arange(len(wanted))
        if len(absent):
            raise RecordIOError(
                f"{self.rec}: key {int(wanted[absent[0]])}: named by the header record but absent from the index"
            )
        return wanted, self.offsets[self._by_key[at]]

    def image_keys(self) -> list[tuple[int, int]]:
        """(key, offset) of every image record, in key order."""
        keys, offsets = self.image_key_arrays()
        return list(zip(keys.tolist(), offsets.tolist(), strict=True))

    def images(self) -> Iterator[tuple[ImageEntry, ImageRecord]]:
        """Every image record in key order with its class; one record in memory at a time."""
        for key, offset in self.image_keys():
            record = self.reader.read_record(offset, key)
            where = f"{self.rec}: key {key}"
            if not record.image:
                raise RecordIOError(f"{where}: image record without image bytes")
            yield ImageEntry(key, offset, image_class(record, where), len(record.image)), record

    def image_columns(self, check: ImageCheck) -> ImageColumns:
        """What `images()` gives, for every image record, read in file order by large sequential chunks with the
        headers parsed in bulk (memory: the columns and one `CHUNK_BYTES` buffer). `check(data, starts, sizes,
        keys)` sees every image's bytes (`data[starts[j] : starts[j] + sizes[j]]`) once, in file order. A record
        the bulk parse does not take (multi-part, damaged, a label that is no class) goes through `unpack` and
        `image_class`: the same values, or the same one-line error, as `images()` (of several faults, the first in
        the file is reported; `images()` reports the first in key order)."""
        keys, offsets = self.image_key_arrays()
        order = np.argsort(offsets, kind="stable")
        n = len(keys)
        cols = ImageColumns(
            keys,
            offsets,
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.full(n, -1, np.int64),
            np.zeros(n, np.int64),
        )
        for block in self.reader.payload_blocks(offsets[order], keys[order]):
            rows = order[block.index]
            cols.lrecords[rows] = block.lengths
            if block.base < 0:
                self._one(cols, block, 0, int(rows[0]), check)
                continue
            image_at, label, size, ok = self._parse(block)
            cols.labels[rows[ok]] = label[ok]
            cols.sizes[rows[ok]] = size[ok]
            cols.starts[rows[ok]] = block.base + image_at[ok]
            done = 0
            for j in [*np.flatnonzero(~ok).tolist(), len(rows)]:
                if j > done:
                    check(block.data, image_at[done:j], size[done:j], keys[rows[done:j]])
                if j < len(rows):
                    self._one(cols, block, j, int(rows[j]), check)
                done = j + 1
        return cols

    @staticmethod
    def _parse(block: PayloadBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Image position (in the block), class and size of each payload, and whether the bulk parse took it."""
        p, length = block.starts, block.lengths
        long = length >= HEADER.size
        head = np.zeros(len(p), _HEAD)
        if long.any():
            raw = block.data[p[long][:, None] + np.arange(HEADER.size)]
            head[long] = np.ascontiguousarray(raw).view(_HEAD).reshape(-1)
        flag = head["flag"].astype(np.int64)
        skip = HEADER.size + 4 * flag
        size = length - skip
        listed = long & (flag > 0) & (size >= 0)
        value = head["label"].astype(np.float64)
        if listed.any():
            first = block.data[p[listed][:, None] + HEADER.size + np.arange(4)]
            value[listed] = np.ascontiguousarray(first).view("<f4").reshape(-1)
        finite = np.isfinite(value)
        whole = finite & (value >= 0) & (value < _CLASS_LIMIT)
        whole &= np.floor(np.where(finite, value, 0)) == value
        ok = long & (size > 0) & whole
        label = np.where(ok, value, 0).astype(np.int64)
        return p + skip, label, size, ok

    def _one(self, cols: ImageColumns, block: PayloadBlock, j: int, row: int, check: ImageCheck) -> None:
        """Payload j of a block read record by record, as `images()` reads it (with its one-line error)."""
        key = int(cols.keys[row])
        where = f"{self.rec}: key {key}"
        start, length = int(block.starts[j]), int(block.lengths[j])
        record = unpack(block.data[start : start + length].tobytes(), where)
        if not record.image:
            raise RecordIOError(f"{where}: image record without image bytes")
        cols.labels[row] = image_class(record, where)
        cols.sizes[row] = len(record.image)
        image_at = start + length - len(record.image)
        if block.base >= 0:
            cols.starts[row] = block.base + image_at
        check(block.data, np.array([image_at]), np.array([len(record.image)]), np.array([key]))

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> RecordSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
