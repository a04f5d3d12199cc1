"""Journal segments: one committed batch each, written whole under a temporary name and renamed."""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache.records import (
    TMP_SUFFIX,
    CacheFormat,
    FaceColumns,
    FaceRecord,
    Failure,
    FailureColumns,
    Removal,
    journal_dir,
)
from facetool.errors import CacheError
from facetool.files import fsync_path

_SEGMENT_MAGIC = b"FTCJSEG1"
_SEGMENT_SUFFIX = ".seg"


@dataclass
class Segment:
    """One committed batch: faces and failures in the order they were added."""

    seq: int
    fmt: CacheFormat
    kinds: list[str]  # "face", "failure" or "removed" per entry, in add order
    faces: FaceColumns
    payloads: list[np.ndarray]
    failures: FailureColumns
    removed: list[str]  # paths of the "removed" entries, in order


def _segment_name(seq: int) -> str:
    return f"{seq:010d}{_SEGMENT_SUFFIX}"


def write_segment(directory: Path, seq: int, fmt: CacheFormat, entries: Sequence[Any]) -> int:
    """Write one segment durably (temp name, fsync, rename, fsync dir); returns its size in bytes."""
    header: dict[str, Any] = {
        "seq": seq,
        "image_size": fmt.image_size,
        "encoding": fmt.encoding,
        "jpeg_quality": fmt.jpeg_quality,
        "entries": [],
    }
    blobs: list[bytes] = []
    for entry, payload in entries:
        if isinstance(entry, Removal):
            item = {"kind": "removed", "path": entry.path}
        elif isinstance(entry, Failure):
            item = {"kind": "failure", "path": entry.path, "identity": entry.identity, "size": entry.size}
            item |= {"mtime_ns": entry.mtime_ns, "reason": entry.reason}
        else:
            item = {"kind": "face", "path": entry.path, "identity": entry.identity, "size": entry.size}
            item |= {"mtime_ns": entry.mtime_ns, "detected": bool(entry.detected), "nbytes": payload.nbytes}
            item["box"] = None if entry.box is None else [float(v) for v in entry.box]
            item["score"] = None if math.isnan(entry.score) else float(entry.score)
            if entry.landmarks is not None:
                item["landmarks"] = [[float(v) for v in point] for point in np.asarray(entry.landmarks)]
            blobs.append(payload.tobytes())
        header["entries"].append(item)
    head = json.dumps(header).encode("utf-8")
    body = _SEGMENT_MAGIC + struct.pack("<Q", len(head)) + head + b"".join(blobs)
    body += struct.pack("<I", zlib.crc32(body))
    final = directory / _segment_name(seq)
    tmp = directory / (final.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_path(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CacheError(f"{final}: cannot write the journal segment ({exc.strerror or exc})") from None
    return len(body)


def _read_segment(path: Path) -> Segment:
    """Parse and verify one segment; a damaged one is a CacheError naming it."""
    data = path.read_bytes()
    bad = CacheError(f"{path}: damaged journal segment")
    if len(data) < 20 or data[:8] != _SEGMENT_MAGIC:
        raise bad
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise bad
    (head_len,) = struct.unpack("<Q", data[8:16])
    try:
        header = json.loads(data[16 : 16 + head_len])
        fmt = CacheFormat(int(header["image_size"]), str(header["encoding"]), int(header["jpeg_quality"]))
        s = fmt.image_size
        pos = 16 + head_len
        kinds, records, payloads, failures, removed = [], [], [], [], []
        for item in header["entries"]:
            kinds.append(item["kind"])
            if item["kind"] == "removed":
                removed.append(str(item["path"]))
                continue
            if item["kind"] == "failure":
                failures.append(
                    Failure(item["path"], item["identity"], item["size"], item["mtime_ns"], item["reason"])
                )
                continue
            raw = np.frombuffer(data, np.uint8, item["nbytes"], pos)
            pos += item["nbytes"]
            payloads.append(raw.reshape(s, s, 3) if fmt.encoding == "raw" else raw)
            box = None if item["box"] is None else tuple(item["box"])
            score = math.nan if item["score"] is None else item["score"]
            marks = item.get("landmarks")
            landmarks = None if marks is None else np.array(marks, np.float32).reshape(5, 2)
            records.append(
                FaceRecord(
                    item["path"],
                    item["identity"],
                    item["size"],
                    item["mtime_ns"],
                    None,
                    box,
                    score,
                    item["detected"],
                    landmarks,
                )
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{path}: damaged journal segment ({exc})") from None
    return Segment(
        int(header["seq"]),
        fmt,
        kinds,
        FaceColumns.from_records(records),
        payloads,
        FailureColumns.from_items(failures),
        removed,
    )


def _segment_files(directory: Path, after: int) -> list[tuple[int, Path]]:
    """Committed segments with a sequence number above `after`, in order (temp files are ignored)."""
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        if p.name.endswith(_SEGMENT_SUFFIX) and p.name[: -len(_SEGMENT_SUFFIX)].isdigit():
            seq = int(p.name[: -len(_SEGMENT_SUFFIX)])
            if seq > after:
                found.append((seq, p))
    return sorted(found)


class JournalMoved(Exception):
    """A segment vanished while reading: a writer consolidated meanwhile; read again."""


def read_journal(path: Path, after: int, fmt: CacheFormat) -> list[Segment]:
    segments = []
    for _seq, seg_path in _segment_files(journal_dir(path), after):
        try:
            seg = _read_segment(seg_path)
        except FileNotFoundError:
            raise JournalMoved from None
        if seg.fmt != fmt:
            raise CacheError(
                f"{seg_path}: journal segment of another format ({', '.join(fmt.differences(seg.fmt))})"
            )
        segments.append(seg)
    return segments


def last_segment(path: Path) -> int:
    """The highest segment number in the journal of the cache at `path` (0 when there is none)."""
    found = _segment_files(journal_dir(path), 0)
    return found[-1][0] if found else 0


def clear_journal(path: Path, through: int) -> None:
    """Delete segments already folded into the file, temp files, and the directory once empty."""
    directory = journal_dir(path)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        stem = p.name[: -len(_SEGMENT_SUFFIX)] if p.name.endswith(_SEGMENT_SUFFIX) else ""
        if p.name.endswith(TMP_SUFFIX) or (stem.isdigit() and int(stem) <= through):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()
