"""MXNet RecordIO without MXNet: the `.rec` parts, the `.idx` index and the 24-byte image record header.

Layout (dmlc-core `recordio.h`, MXNet `recordio.py`): each part is the magic word, a 32-bit `lrecord`
(cflag in bits 31..29, length in bits 28..0), the data, zero padding to a multiple of 4. A record whose data
holds the magic word at a 4-byte aligned offset is split there into parts (cflag 1 first, 2 middle, 3 last) and
the magic word is dropped; the reader joins the parts and puts it back. The payload of an image record is
`struct "<IfQQ"` (flag, label, id, id2), then `flag` float32 labels when flag > 0, then the image bytes.
The `.idx` is text, `key<TAB>offset` per line, keys in any order.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Iterator, Sequence
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
CHUNK_BYTES = 8 << 20  # bulk reads: one buffer of this size (a record larger than it is read alone)
_GAP_BYTES = 1 << 14  # bulk reads of scattered records: records closer than this share one read
_MAX_BULK_INDEX = 1 << 30  # a larger .idx is parsed line by line (its bytes are held while parsed in bulk)
_PLAIN_INDEX = re.compile(rb"(?:-?[0-9]{1,18}\t[0-9]{1,18}\n)*(?:-?[0-9]{1,18}\t[0-9]{1,18})?")


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


def _bytes_at(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The `width` bytes at each of `starts` in `data`, one row each (all must lie inside `data`)."""
    return data[starts[:, None] + np.arange(width)]


def _words_at(data: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two little-endian u32 of a part header (magic, lrecord) at each of `starts`."""
    words = np.ascontiguousarray(_bytes_at(data, starts, _PART.size)).view("<u4").reshape(-1, 2)
    return words[:, 0].astype(np.int64), words[:, 1].astype(np.int64)


def read_index_arrays(path: Path, rec_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys and offsets of an `.idx` in file order, as `read_index` gives them, parsed in bulk when every line
    is plain `key<TAB>offset`; anything else (or a broken index) goes through `read_index` and its errors."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_BULK_INDEX)
    except OSError as exc:
        raise RecordIOError(f"{path}: cannot read the index ({exc.strerror or exc})") from None
    if len(data) < _MAX_BULK_INDEX and _PLAIN_INDEX.fullmatch(data):
        values = np.fromstring(data, dtype=np.int64, sep=" ") if data else np.zeros(0, np.int64)
        keys, offsets = values[0::2], values[1::2]
        if (
            len(keys) == len(offsets)
            and len(np.unique(keys)) == len(keys)
            and (len(offsets) == 0 or (offsets.min() >= 0 and offsets.max() < rec_size))
        ):
            return keys, offsets
    pairs = read_index(path, rec_size)
    return np.array([k for k, _ in pairs], np.int64), np.array([o for _, o in pairs], np.int64)


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


@dataclass(frozen=True)
class PayloadBlock:
    """Payloads of records read together: payload j is `data[starts[j] : starts[j] + lengths[j]]`, the record
    at position `index[j]` of the offsets asked for; `base` is the file position of `data[0]`, or -1 when `data`
    holds one multi-part record's joined payload (not a copy of the file's bytes)."""

    data: np.ndarray
    index: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    base: int


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

    def _fill(self, buffer: np.ndarray, position: int) -> int:
        self._handle.seek(position)
        return self._handle.readinto(memoryview(buffer)) or 0

    def payload_blocks(self, offsets: np.ndarray, keys: np.ndarray) -> Iterator[PayloadBlock]:
        """The payloads of the records at `offsets` (sorted ascending; `keys` name them in errors), read in
        sequential chunks of `CHUNK_BYTES`: each block holds whole single-part records of one chunk, their part
        headers parsed with numpy. A record that is multi-part, damaged, or larger than a chunk comes alone,
        through `read_at` (its parts joined, or its one-line error). A block's buffer is reused by the next."""
        buffer = np.empty(CHUNK_BYTES, np.uint8)
        i, n = 0, len(offsets)
        while i < n:
            base = int(offsets[i])
            got = self._fill(buffer, base)
            stop = i + int(np.searchsorted(offsets[i:], base + got - _PART.size, "right"))
            rel = offsets[i:stop] - base
            magic, lrecord = _words_at(buffer, rel)
            length = lrecord & _LENGTH_MASK
            whole = (magic == MAGIC) & (lrecord >> 29 == 0)
            fits = rel + _PART.size + length <= got
            straddles = np.flatnonzero(whole & ~fits)  # the chunk ends inside it: the next chunk starts there
            end = max(int(straddles[0]) if len(straddles) else stop - i, 1)
            done = 0
            for j in [*np.flatnonzero(~(whole & fits)[:end]).tolist(), end]:
                if j > done:
                    yield PayloadBlock(
                        buffer[:got],
                        np.arange(i + done, i + j),
                        rel[done:j] + _PART.size,
                        length[done:j],
                        base,
                    )
                if j < end:
                    payload = np.frombuffer(self.read_at(int(offsets[i + j]), int(keys[i + j])), np.uint8)
                    size = np.array([len(payload)], np.int64)
                    yield PayloadBlock(payload, np.array([i + j]), np.zeros(1, np.int64), size, -1)
                done = j + 1
            i += end

    @staticmethod
    def _spans(ranked: np.ndarray, reach: np.ndarray, bounds: list[int]) -> Iterator[tuple[int, int]]:
        """The runs [lo, hi) between `bounds`, cut further so that none spans more than `CHUNK_BYTES` (unless
        one record alone does)."""
        for lo, hi in itertools.pairwise(bounds):
            while lo < hi:
                step = int(np.searchsorted(reach[lo:hi], ranked[lo] + CHUNK_BYTES, "right"))
                yield lo, lo + max(step, 1)
                lo += max(step, 1)

    def read_spans(
        self,
        offsets: np.ndarray,
        lrecords: np.ndarray,
        starts: np.ndarray,
        sizes: np.ndarray,
        keys: np.ndarray,
    ) -> list[np.ndarray]:
        """Bytes [starts, starts + sizes) of the single-part records at `offsets`, checking that each record
        still has the part header `lrecords` seen before; records that lie close together share one read."""
        out: list[np.ndarray] = [np.zeros(0, np.uint8)] * len(offsets)
        if not len(offsets):
            return out
        order = np.argsort(offsets, kind="stable")
        ranked, ends = offsets[order], (starts + sizes)[order]
        reach = np.maximum.accumulate(ends)
        cuts = np.flatnonzero(ranked[1:] - reach[:-1] > _GAP_BYTES) + 1
        for lo, hi in self._spans(ranked, reach, [0, *cuts.tolist(), len(order)]):
            rows = order[lo:hi]
            base = int(ranked[lo])
            span = np.empty(int(ends[lo:hi].max()) - base, np.uint8)
            rel = offsets[rows] - base
            changed = np.ones(len(rows), bool)
            if self._fill(span, base) == len(span):
                magic, lrecord = _words_at(span, rel)
                changed = (magic != MAGIC) | (lrecord != lrecords[rows])
            if changed.any():
                key = int(keys[rows[int(np.argmax(changed))]])
                raise RecordIOError(
                    f"{self.path}: key {key}: changed while it was read (its record header differs)"
                )
            for r, s, z in zip(
                rows.tolist(), (starts[rows] - base).tolist(), sizes[rows].tolist(), strict=True
            ):
                out[r] = span[s : s + z]
        return out

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

    def write_batch(self, keys: np.ndarray, heads: np.ndarray, bodies: Sequence[bytes | np.ndarray]) -> None:
        """Append records `heads[j] + bodies[j]` (heads: one row of bytes per record) under `keys[j]`, as `write`
        would one by one, in one buffer and one write each for the `.rec` and the `.idx`; a record whose data
        holds the magic word (split into parts) or is too large goes through `write`."""
        n = len(keys)
        if n == 0:
            return
        width = heads.shape[1]
        bodies = [np.frombuffer(b, np.uint8) if isinstance(b, bytes) else b.reshape(-1) for b in bodies]
        lengths = width + np.array([len(b) for b in bodies], np.int64)
        sizes = _PART.size + lengths + (-lengths % 4)
        at = np.concatenate([[0], np.cumsum(sizes)])
        out = np.zeros(int(at[-1]), np.uint8)
        words = out.view("<u4")
        words[at[:-1] // 4] = MAGIC
        words[at[:-1] // 4 + 1] = np.minimum(lengths, _LENGTH_MASK)
        out[(at[:-1] + _PART.size)[:, None] + np.arange(width)] = heads
        for start, body in zip((at[:-1] + _PART.size + width).tolist(), bodies, strict=True):
            out[start : start + len(body)] = body
        hits = np.flatnonzero(words == MAGIC) * 4
        record = np.searchsorted(at, hits, "right") - 1
        inside = hits + 4 <= at[record] + _PART.size + lengths[record] - lengths[record] % 4
        alone = np.zeros(n, bool)
        alone[record[inside & (hits != at[record])]] = True
        alone |= lengths >= MAX_RECORD
        done = 0
        for j in [*np.flatnonzero(alone).tolist(), n]:
            if j > done:
                positions = (self.position + at[done:j] - at[done]).tolist()
                self._idx.write(
                    "".join(
                        f"{k}\t{p}\n" for k, p in zip(keys[done:j].tolist(), positions, strict=True)
                    ).encode()
                )
                self._rec.write(out[at[done] : at[j]])
                self.position += int(at[j] - at[done])
            if j < n:
                self.write(int(keys[j]), heads[j].tobytes() + bodies[j].tobytes())
            done = j + 1

    def _part(self, cflag: int, data: memoryview) -> None:
        n = len(data)
        self._rec.write(_PART.pack(MAGIC, (cflag << 29) | n))
        self._rec.write(data)
        pad = -n % 4
        if pad:
            self._rec.write(b"\0" * pad)
        self.position += _PART.size + n + pad
