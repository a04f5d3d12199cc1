"""An insightface-style RecordIO training set: `train.rec`, its `.idx`, `property`, and which layout it has.

Three layouts are found in the wild (docs/design.md, "Field formats"):

- header record: record 0 has flag > 0, an empty body and `label[0]` = one past the last image key; the
  images are keys 1 .. label[0] - 1, the records after them are per-identity ranges (insightface's
  RecBuilder, the older face2rec2.py);
- flat: every record is an image (`python -m mxnet.tools.im2rec`, arcface_torch's route for custom data).

An image's class is its scalar label, or `label[0]` for a list label (face2rec2's `[class, aligned]`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facetool.formats.recordio import ImageRecord, RecordIOError, RecordReader, read_index

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


class RecordSet:
    """An opened RecordIO training set; `images()` lists its image records without keeping their bytes."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.rec, self.idx = rec_files(source)
        self.property = read_property(self.rec.parent / "property")
        self.reader = RecordReader(self.rec)
        try:
            if self.idx is not None:
                self.index = read_index(self.idx, self.reader.size)
            else:
                self.index = self._keys_from_headers()
            self._offsets = dict(self.index)
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

    def _detect_layout(self) -> tuple[str, range | None]:
        offsets = self._offsets
        if 0 in offsets:
            head = self.reader.read_record(offsets[0], 0)
            if head.flag > 0 and not head.image:
                end = int(head.label_values[0])
                if end < 1:
                    raise RecordIOError(
                        f"{self.rec}: key 0: header record label {head.label!r} names no images"
                    )
                missing = [key for key in (1, end - 1) if key not in offsets]
                if missing:
                    raise RecordIOError(
                        f"{self.rec}: key {missing[0]}: named by the header record (images 1..{end - 1}) "
                        f"but absent from {self.idx}"
                    )
                return HEADER_LAYOUT, range(1, end)
        return FLAT_LAYOUT, None

    def read(self, key: int) -> ImageRecord:
        """The record of `key`."""
        offset = self._offsets.get(key)
        if offset is None:
            raise RecordIOError(f"{self.rec}: key {key}: not in the index")
        return self.reader.read_record(offset, key)

    def image_keys(self) -> list[tuple[int, int]]:
        """(key, offset) of every image record, in key order."""
        if self._image_keys is None:
            return sorted(self.index)
        offsets = self._offsets
        out = []
        for key in self._image_keys:
            if key not in offsets:
                raise RecordIOError(
                    f"{self.rec}: key {key}: named by the header record but absent from the index"
                )
            out.append((key, offsets[key]))
        return out

    def images(self) -> Iterator[tuple[ImageEntry, ImageRecord]]:
        """Every image record in key order with its class; one record in memory at a time."""
        for key, offset in self.image_keys():
            record = self.reader.read_record(offset, key)
            where = f"{self.rec}: key {key}"
            if not record.image:
                raise RecordIOError(f"{where}: image record without image bytes")
            yield ImageEntry(key, offset, image_class(record, where), len(record.image)), record

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> RecordSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
