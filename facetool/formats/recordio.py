"""MXNet RecordIO without MXNet: the `.rec` parts, the `.idx` index and the 24-byte image record header.

Layout (dmlc-core `recordio.h`, MXNet `recordio.py`): each part is the magic word, a 32-bit `lrecord`
(cflag in bits 31..29, length in bits 28..0), the data, zero padding to a multiple of 4. A record whose data
holds the magic word at a 4-byte aligned offset is split there into parts (cflag 1 first, 2 middle, 3 last) and
the magic word is dropped; the reader joins the parts and puts it back. The payload of an image record is
`struct "<IfQQ"` (flag, label, id, id2), then `flag` float32 labels when flag > 0, then the image bytes.
The `.idx` is text, `key<TAB>offset` per line, keys in any order.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from facetool.errors import FacetoolError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART = struct.Struct("<II")
HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1
MAX_RECORD = 1 << 29
_MAX_PARTS_BYTES = 1 << 31  # one record's parts together: a damaged length never makes us read gigabytes


class RecordIOError(FacetoolError):
    """A RecordIO file that cannot be read: bad magic, a truncated or corrupt record, a broken index."""


Label = float | tuple[float, ...]


@dataclass(frozen=True)
class ImageRecord:
    """One record as MXNet's `recordio.unpack` returns it: header fields and the bytes after them."""

    flag: int
    label: Label
    id: int
    id2: int
    image: bytes

    @property
    def label_values(self) -> tuple[float, ...]:
        return self.label if isinstance(self.label, tuple) else (self.label,)


def unpack(payload: bytes, where: str) -> ImageRecord:
    """Split a record payload into its header, its float labels (when flag > 0) and the image bytes."""
    if len(payload) < HEADER.size:
        raise RecordIOError(f"{where}: record of {len(payload)} bytes is shorter than its 24-byte header")
    flag, label, rid, rid2 = HEADER.unpack_from(payload)
    start = HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if end > len(payload):
            raise RecordIOError(
                f"{where}: header announces {flag} labels, the record is {len(payload)} bytes"
            )
        values = tuple(float(v) for v in np.frombuffer(payload, "<f4", flag, start))
        return ImageRecord(flag, values, rid, rid2, payload[end:])
    return ImageRecord(flag, float(label), rid, rid2, payload[start:])


def pack(record: ImageRecord) -> bytes:
    """A record payload as MXNet's `recordio.pack` writes it (a tuple label sets flag to its length)."""
    if isinstance(record.label, tuple):
        labels = np.asarray(record.label, "<f4").tobytes()
        head = HEADER.pack(len(record.label), 0.0, record.id, record.id2)
        return head + labels + record.image
    return HEADER.pack(0, float(record.label), record.id, record.id2) + record.image


def read_index(path: Path, rec_size: int) -> list[tuple[int, int]]:
    """(key, offset) of every line of an `.idx`, in file order; each offset must lie inside the `.rec`."""
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    try:
        handle = open(path, encoding="ascii", errors="strict")  # noqa: SIM115
    except OSError as exc:
        raise RecordIOError(f"{path}: cannot read the index ({exc.strerror or exc})") from None
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise RecordIOError(
                        f"{path}: line {number}: expected `key<TAB>offset`, got {line.strip()!r}"
                    )
                try:
                    key, offset = int(fields[0]), int(fields[1])
                except ValueError:
                    raise RecordIOError(f"{path}: line {number}: key and offset must be integers") from None
                if key in seen:
                    raise RecordIOError(f"{path}: line {number}: key {key} appears twice")
                if not 0 <= offset < rec_size:
                    raise RecordIOError(
                        f"{path}: key {key}: offset {offset} lies past the end of the .rec ({rec_size} bytes)"
                    )
                seen.add(key)
                out.append((key, offset))
        except UnicodeDecodeError:
            raise RecordIOError(f"{path}: not a text index (undecodable bytes)") from None
    return out


class RecordReader:
    """Random and sequential access to the records of one `.rec` file; one open handle, no record cached."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._handle: IO[bytes] = open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise RecordIOError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        self.size = os.fstat(self._handle.fileno()).st_size

    def read_at(self, offset: int, key: int | str) -> bytes:
        """The payload of the record starting at `offset`, its parts joined; `key` names it in errors."""
        where = f"{self.path}: key {key}"
        handle = self._handle
        handle.seek(offset)
        chunks: list[bytes] = []
        total = 0
        first = True
        position = offset
        while True:
            head = handle.read(_PART.size)
            if len(head) < _PART.size:
                raise RecordIOError(f"{where}: truncated at byte {position} (the file ends inside a record)")
            magic, lrecord = _PART.unpack(head)
            if magic != MAGIC:
                raise RecordIOError(
                    f"{where}: bad magic 0x{magic:08x} at byte {position} (not a record start)"
                )
            cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
            if (cflag in (0, 1)) != first or cflag > 3:
                raise RecordIOError(f"{where}: corrupt record (part flag {cflag} at byte {position})")
            total += length + 4
            if total > _MAX_PARTS_BYTES:
                raise RecordIOError(f"{where}: corrupt record (parts add up to more than 2 GiB)")
            data = handle.read(length)
            if len(data) < length:
                raise RecordIOError(f"{where}: truncated record (the file ends inside its {length} bytes)")
            chunks.append(data)
            position += _PART.size + length + (-length % 4)
            if cflag in (0, 3):
                break
            chunks.append(_MAGIC_BYTES)
            first = False
            handle.seek(position)
        return b"".join(chunks)

    def read_record(self, offset: int, key: int | str) -> ImageRecord:
        """The record at `offset`, unpacked."""
        return unpack(self.read_at(offset, key), f"{self.path}: key {key}")

    def scan(self) -> Iterator[tuple[int, int]]:
        """(position, offset) of every record in file order, by walking the parts (for a `.rec` without `.idx`)."""
        handle = self._handle
        position, index = 0, 0
        while position < self.size:
            start = position
            while True:
                handle.seek(position)
                head = handle.read(_PART.size)
                where = f"{self.path}: record {index}"
                if len(head) < _PART.size:
                    raise RecordIOError(
                        f"{where}: truncated at byte {position} (the file ends inside a record)"
                    )
                magic, lrecord = _PART.unpack(head)
                if magic != MAGIC:
                    raise RecordIOError(f"{where}: bad magic 0x{magic:08x} at byte {position}")
                cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
                position += _PART.size + length + (-length % 4)
                if position > self.size:
                    raise RecordIOError(
                        f"{where}: truncated record (the file ends inside its {length} bytes)"
                    )
                if cflag in (0, 3):
                    break
            yield index, start
            index += 1

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordWriter:
    """Writes records as MXNet's `MXIndexedRecordIO.write_idx` does: parts split at aligned magic words,
    zero padding, and an `.idx` line per record. Writes into the open handles it is given."""

    def __init__(self, rec: IO[bytes], idx: IO[bytes]) -> None:
        self._rec = rec
        self._idx = idx
        self.position = 0

    def write(self, key: int, payload: bytes) -> None:
        """Append one record (split into parts where its data holds the magic word) and index it."""
        if len(payload) >= MAX_RECORD:
            raise RecordIOError(f"key {key}: a record of {len(payload)} bytes exceeds RecordIO's 2^29 limit")
        self._idx.write(f"{key}\t{self.position}\n".encode("ascii"))
        view = memoryview(payload)
        start = 0
        aligned = len(payload) - len(payload) % 4
        words = np.frombuffer(view[:aligned], "<u4") if aligned else np.zeros(0, "<u4")
        for i in (np.flatnonzero(words == MAGIC) * 4).tolist():
            self._part(1 if start == 0 else 2, view[start:i])
            start = i + 4
        self._part(3 if start else 0, view[start:])

    def _part(self, cflag: int, data: memoryview) -> None:
        n = len(data)
        self._rec.write(_PART.pack(MAGIC, (cflag << 29) | n))
        self._rec.write(data)
        pad = -n % 4
        if pad:
            self._rec.write(b"\0" * pad)
        self.position += _PART.size + n + pad
