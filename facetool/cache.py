"""The HDF5 face cache: the only code that opens HDF5 files.

A cache is one consolidated HDF5 file plus, while a writer is running (or after it was killed), a journal
directory of small segment files beside it. Segments are written to a temporary name, fsynced and renamed,
so each one is complete or absent; the HDF5 file is only ever replaced whole with `os.replace`. Readers
show the file plus the valid segments; a new writer folds the journal into the file first.
The layout is documented in docs/cache-format.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from facetool import __version__
from facetool.config.dataset import CACHE_DEFAULTS
from facetool.errors import CacheError, UsageError

FORMAT_NAME = "facetool-face-cache"
FORMAT_VERSION = 1
ENCODINGS = ("jpeg", "raw")

_SEGMENT_MAGIC = b"FTCJSEG1"
_SEGMENT_SUFFIX = ".seg"
_TMP_SUFFIX = ".tmp"
_WRITE_BLOCK = 1024
_DECODE_CHUNK = 256


@dataclass(frozen=True)
class FaceRecord:
    """One image that produced a face crop."""

    path: str
    identity: str
    size: int
    mtime_ns: int
    face: np.ndarray
    box: tuple[float, float, float, float] | None
    score: float
    detected: bool


@dataclass(frozen=True)
class Failure:
    """One image that could not be used, with the reason."""

    path: str
    identity: str
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class CacheFormat:
    """What two caches must share to be appended to or merged with each other."""

    image_size: int
    encoding: str
    jpeg_quality: int

    def differences(self, other: CacheFormat) -> list[str]:
        """Human-readable `name: mine vs theirs` for every field that differs."""
        names = ["image_size", "encoding"] + (["jpeg_quality"] if self.encoding == other.encoding else [])
        return [
            f"{name} {getattr(other, name)!r} vs {getattr(self, name)!r}"
            for name in names
            if getattr(self, name) != getattr(other, name)
        ]


def journal_dir(path: str | os.PathLike[str]) -> Path:
    """The directory of journal segments that belongs to the cache at `path`."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file a writer holds while it writes the cache at `path`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


# ---------------------------------------------------------------------------------------------------------
# Columnar metadata


@dataclass
class _Faces:
    """Metadata of face records, one entry per record, in columns."""

    paths: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mtimes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    detected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def take(self, idx: np.ndarray) -> _Faces:
        return _Faces(
            [self.paths[i] for i in idx],
            [self.identities[i] for i in idx],
            self.sizes[idx],
            self.mtimes[idx],
            self.boxes[idx],
            self.scores[idx],
            self.detected[idx],
        )

    @staticmethod
    def concat(parts: Sequence[_Faces]) -> _Faces:
        return _Faces(
            [p for part in parts for p in part.paths],
            [p for part in parts for p in part.identities],
            np.concatenate([part.sizes for part in parts]).astype(np.int64),
            np.concatenate([part.mtimes for part in parts]).astype(np.int64),
            np.concatenate([part.boxes for part in parts]).astype(np.float32).reshape(-1, 4),
            np.concatenate([part.scores for part in parts]).astype(np.float32),
            np.concatenate([part.detected for part in parts]).astype(bool),
        )

    @staticmethod
    def from_records(records: Sequence[FaceRecord]) -> _Faces:
        return _Faces(
            [r.path for r in records],
            [r.identity for r in records],
            np.array([r.size for r in records], np.int64),
            np.array([r.mtime_ns for r in records], np.int64),
            np.array([r.box if r.box is not None else (math.nan,) * 4 for r in records], np.float32).reshape(
                -1, 4
            ),
            np.array([r.score for r in records], np.float32),
            np.array([r.detected for r in records], bool),
        )


@dataclass
class _Failures:
    paths: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def items(self) -> list[Failure]:
        return [
            Failure(*row)
            for row in zip(self.paths, self.identities, self.sizes, self.mtimes, self.reasons, strict=True)
        ]

    @staticmethod
    def from_items(items: Iterable[Failure]) -> _Failures:
        out = _Failures()
        for f in items:
            out.paths.append(f.path)
            out.identities.append(f.identity)
            out.sizes.append(int(f.size))
            out.mtimes.append(int(f.mtime_ns))
            out.reasons.append(f.reason)
        return out


# ---------------------------------------------------------------------------------------------------------
# Image encoding


def _encode(face: np.ndarray, fmt: CacheFormat) -> np.ndarray:
    """RGB uint8 face -> the stored payload: JPEG bytes as a 1-D uint8 array, or the array itself."""
    if fmt.encoding == "raw":
        return np.ascontiguousarray(face)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, fmt.jpeg_quality]
    )
    if not ok:
        raise CacheError("JPEG encoding of a face failed")
    return buf.reshape(-1)


def _decode_into(payloads: Sequence[np.ndarray], out: np.ndarray, where: str) -> None:
    """Decode JPEG payloads into `out` (n, S, S, 3) RGB, in threads (OpenCV releases the GIL)."""

    def work(start: int) -> None:
        for i in range(start, min(start + _DECODE_CHUNK, len(payloads))):
            img = cv2.imdecode(payloads[i], cv2.IMREAD_COLOR_RGB)
            if img is None or img.shape != out.shape[1:]:
                raise CacheError(f"{where}: a stored face image is corrupted")
            out[i] = img

    starts = range(0, len(payloads), _DECODE_CHUNK)
    if len(payloads) <= _DECODE_CHUNK:
        for s in starts:
            work(s)
        return
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(work, starts))


# ---------------------------------------------------------------------------------------------------------
# The consolidated HDF5 file


def _h5_errors(where: Path | str) -> contextlib.AbstractContextManager:
    """Turn any HDF5 or decoding failure into a CacheError naming the file."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except CacheError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError) as exc:
            raise CacheError(f"{where}: truncated or corrupted face cache ({exc})") from None

    return guard()


def _member(parent: h5py.Group, name: str, kind: type = h5py.Dataset) -> Any:
    """`parent[name]` when it is a `kind` (Group or Dataset); a damaged file can hold anything there."""
    obj = parent.get(name)
    if not isinstance(obj, kind):
        raise CacheError(
            f"{parent.file.filename}: truncated or corrupted face cache (no {kind.__name__} {name!r})"
        )
    return obj


class _FileStore:
    """Read access to one consolidated cache file (images are read lazily)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise CacheError(f"{path}: no such face cache")
        if path.is_dir():
            raise CacheError(f"{path}: is a directory, not a face cache")
        try:
            self.h5 = h5py.File(path, "r", locking=False)
        except OSError as exc:
            raise CacheError(f"{path}: not an HDF5 file, or truncated or corrupted ({exc})") from None
        try:
            self._load()
        except BaseException:
            self.h5.close()
            raise

    def _load(self) -> None:
        path = self.path
        with _h5_errors(path):
            attrs = self.h5.attrs
            if attrs.get("format") != FORMAT_NAME:
                raise CacheError(f"{path}: not a facetool face cache (no format={FORMAT_NAME!r} attribute)")
            version = int(attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise CacheError(
                    f"{path}: face cache format version {version}, this facetool reads version {FORMAT_VERSION}"
                )
            self.format = CacheFormat(
                int(attrs["image_size"]), str(attrs["encoding"]), int(attrs["jpeg_quality"])
            )
            if self.format.encoding not in ENCODINGS:
                raise CacheError(f"{path}: unknown image encoding {self.format.encoding!r}")
            self.meta = json.loads(attrs["meta"])
            if not isinstance(self.meta, dict):
                raise CacheError(f"{path}: the meta attribute is not a JSON object")
            self.journal_through = int(attrs["journal_through"])
            g, f = _member(self.h5, "faces", h5py.Group), _member(self.h5, "failures", h5py.Group)
            names = [str(s) for s in _member(self.h5, "identities").asstr()[:]]
            labels = _member(g, "label")[:].astype(np.int64)
            n = len(labels)
            if n and (labels.min() < 0 or labels.max() >= len(names)):
                raise CacheError(f"{path}: face labels out of range of the identities")
            self.faces = _Faces(
                [str(s) for s in _member(g, "path").asstr()[:]],
                [names[i] for i in labels],
                _member(g, "size")[:].astype(np.int64),
                _member(g, "mtime_ns")[:].astype(np.int64),
                _member(g, "box")[:].astype(np.float32).reshape(-1, 4),
                _member(g, "score")[:].astype(np.float32),
                _member(g, "detected")[:].astype(bool),
            )
            self.failures = _Failures(
                [str(s) for s in _member(f, "path").asstr()[:]],
                [str(s) for s in _member(f, "identity").asstr()[:]],
                [int(v) for v in _member(f, "size")[:]],
                [int(v) for v in _member(f, "mtime_ns")[:]],
                [str(s) for s in _member(f, "reason").asstr()[:]],
            )
            columns = [len(self.faces.paths), len(self.faces.sizes), len(self.faces.mtimes)]
            columns += [len(self.faces.boxes), len(self.faces.scores), len(self.faces.detected)]
            if self.format.encoding == "jpeg":
                self.offsets = _member(g, "jpeg_offset")[:].astype(np.int64)
                self.blob = _member(g, "jpeg")
                ordered = (
                    len(self.offsets) == n + 1 and self.offsets[0] == 0 and (np.diff(self.offsets) > 0).all()
                )
                if not ordered or self.offsets[-1] != self.blob.shape[0]:
                    raise CacheError(f"{path}: JPEG offsets do not match the stored bytes")
            else:
                self.images = _member(g, "image")
                s = self.format.image_size
                if self.images.shape != (n, s, s, 3):
                    raise CacheError(
                        f"{path}: image array has shape {self.images.shape}, expected {(n, s, s, 3)}"
                    )
            if any(c != n for c in columns):
                raise CacheError(f"{path}: face columns have different lengths")
            fail = self.failures
            if (
                len(
                    {
                        len(fail.paths),
                        len(fail.identities),
                        len(fail.sizes),
                        len(fail.mtimes),
                        len(fail.reasons),
                    }
                )
                > 1
            ):
                raise CacheError(f"{path}: failure columns have different lengths")

    def payloads(self, idx: np.ndarray) -> list[np.ndarray]:
        """Stored payloads of the given face indices (JPEG bytes or raw arrays)."""
        if len(idx) == 0:
            return []
        with _h5_errors(self.path):
            if self.format.encoding == "jpeg":
                return self._jpeg_payloads(idx)
            lo, hi = int(idx.min()), int(idx.max()) + 1
            if hi - lo <= 2 * len(idx):
                block = self.images[lo:hi]
                return [block[i - lo] for i in idx]
            return [self.images[int(i)] for i in idx]

    def payload_sizes(self, idx: np.ndarray) -> np.ndarray:
        if self.format.encoding == "raw":
            return np.full(len(idx), self.format.image_size**2 * 3, np.int64)
        return self.offsets[idx + 1] - self.offsets[idx]

    def _jpeg_payloads(self, idx: np.ndarray) -> list[np.ndarray]:
        lo, hi = int(idx.min()), int(idx.max()) + 1
        start, stop = self.offsets[lo], self.offsets[hi]
        needed = int((self.offsets[idx + 1] - self.offsets[idx]).sum())
        if stop - start <= 4 * needed + (1 << 20):
            span = self.blob[start:stop]
            return [span[self.offsets[i] - start : self.offsets[i + 1] - start] for i in idx]
        return [self.blob[self.offsets[i] : self.offsets[i + 1]] for i in idx]

    def read_faces(self, idx: np.ndarray | None, out: np.ndarray) -> None:
        """Decode the faces at `idx` (all when None) into `out`; whole reads go through one blob read."""
        with _h5_errors(self.path):
            if self.format.encoding == "raw":
                if idx is None:
                    if len(out):
                        self.images.read_direct(out)
                else:
                    for k, face in enumerate(self.payloads(idx)):
                        out[k] = face
                return
            if idx is None:
                blob = self.blob[:] if self.blob.shape[0] else np.zeros(0, np.uint8)
                payloads = [blob[self.offsets[i] : self.offsets[i + 1]] for i in range(len(out))]
            else:
                payloads = self._jpeg_payloads(idx) if len(idx) else []
        _decode_into(payloads, out, str(self.path))

    def close(self) -> None:
        self.h5.close()


def _write_file(
    path: Path,
    fmt: CacheFormat,
    meta: dict[str, Any],
    journal_through: int,
    faces: _Faces,
    failures: _Failures,
    selection: _Selection | None,
) -> None:
    """Write a complete cache to a temporary file beside `path`, fsync it and move it over `path`.

    `faces` must be sorted by path; `selection` gives their stored payloads in the same order.
    Identities are sorted by name and labels assigned here, so equal content gives an equal file.
    """
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    names = sorted(set(faces.identities))
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[n] for n in faces.identities], np.int64)
    n, s = len(faces.paths), fmt.image_size
    strings = h5py.string_dtype("utf-8")
    try:
        with h5py.File(tmp, "w", locking=False) as h5:
            h5.attrs.update(
                {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "image_size": s,
                    "encoding": fmt.encoding,
                    "jpeg_quality": fmt.jpeg_quality,
                    "meta": json.dumps(meta, sort_keys=True),
                    "journal_through": journal_through,
                    "facetool_version": __version__,
                }
            )
            h5.create_dataset("identities", data=np.array(names, dtype=object), dtype=strings)
            g = h5.create_group("faces")
            g.create_dataset("path", data=np.array(faces.paths, dtype=object), dtype=strings)
            g.create_dataset("label", data=labels)
            g.create_dataset("size", data=faces.sizes)
            g.create_dataset("mtime_ns", data=faces.mtimes)
            g.create_dataset("box", data=faces.boxes.reshape(-1, 4))
            g.create_dataset("score", data=faces.scores)
            g.create_dataset("detected", data=faces.detected)
            _write_images(g, fmt, n, selection)
            f = h5.create_group("failures")
            f.create_dataset("path", data=np.array(failures.paths, dtype=object), dtype=strings)
            f.create_dataset("identity", data=np.array(failures.identities, dtype=object), dtype=strings)
            f.create_dataset("size", data=np.array(failures.sizes, np.int64))
            f.create_dataset("mtime_ns", data=np.array(failures.mtimes, np.int64))
            f.create_dataset("reason", data=np.array(failures.reasons, dtype=object), dtype=strings)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CacheError(f"{path}: cannot write the face cache ({exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_images(g: h5py.Group, fmt: CacheFormat, n: int, selection: _Selection | None) -> None:
    """Copy the payloads block by block, so memory stays bounded by one block."""
    s = fmt.image_size
    if fmt.encoding == "raw":
        dset = g.create_dataset("image", shape=(n, s, s, 3), dtype=np.uint8)
    else:
        sizes = selection.sizes() if selection is not None else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        g.create_dataset("jpeg_offset", data=offsets)
        dset = g.create_dataset("jpeg", shape=(int(offsets[-1]),), dtype=np.uint8)
    for start in range(0, n, _WRITE_BLOCK):
        stop = min(n, start + _WRITE_BLOCK)
        block = selection.payloads(start, stop)  # type: ignore[union-attr]
        if fmt.encoding == "raw":
            dset[start:stop] = np.stack(block)
            continue
        data = np.concatenate([np.asarray(p, np.uint8).reshape(-1) for p in block])
        if len(data) != offsets[stop] - offsets[start]:
            raise CacheError(f"{g.file.filename}: stored image sizes changed while copying")
        dset[offsets[start] : offsets[stop]] = data


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# Journal segments


@dataclass
class _Segment:
    """One committed batch: faces and failures in the order they were added."""

    seq: int
    fmt: CacheFormat
    kinds: list[str]  # "face" or "failure" per entry, in add order
    faces: _Faces
    payloads: list[np.ndarray]
    failures: _Failures


def _segment_name(seq: int) -> str:
    return f"{seq:010d}{_SEGMENT_SUFFIX}"


def _write_segment(directory: Path, seq: int, fmt: CacheFormat, entries: Sequence[Any]) -> int:
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
        if isinstance(entry, Failure):
            item = {"kind": "failure", "path": entry.path, "identity": entry.identity, "size": entry.size}
            item |= {"mtime_ns": entry.mtime_ns, "reason": entry.reason}
        else:
            item = {"kind": "face", "path": entry.path, "identity": entry.identity, "size": entry.size}
            item |= {"mtime_ns": entry.mtime_ns, "detected": bool(entry.detected), "nbytes": payload.nbytes}
            item["box"] = None if entry.box is None else [float(v) for v in entry.box]
            item["score"] = None if math.isnan(entry.score) else float(entry.score)
            blobs.append(payload.tobytes())
        header["entries"].append(item)
    head = json.dumps(header).encode("utf-8")
    body = _SEGMENT_MAGIC + struct.pack("<Q", len(head)) + head + b"".join(blobs)
    body += struct.pack("<I", zlib.crc32(body))
    final = directory / _segment_name(seq)
    tmp = directory / (final.name + _TMP_SUFFIX)
    try:
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_path(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CacheError(f"{final}: cannot write the journal segment ({exc.strerror or exc})") from None
    return len(body)


def _read_segment(path: Path) -> _Segment:
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
        kinds, records, payloads, failures = [], [], [], []
        for item in header["entries"]:
            kinds.append(item["kind"])
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
                )
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{path}: damaged journal segment ({exc})") from None
    return _Segment(
        int(header["seq"]), fmt, kinds, _Faces.from_records(records), payloads, _Failures.from_items(failures)
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


class _JournalMoved(Exception):
    """A segment vanished while reading: a writer consolidated meanwhile; read again."""


def _read_journal(path: Path, after: int, fmt: CacheFormat) -> list[_Segment]:
    segments = []
    for _seq, seg_path in _segment_files(journal_dir(path), after):
        try:
            seg = _read_segment(seg_path)
        except FileNotFoundError:
            raise _JournalMoved from None
        if seg.fmt != fmt:
            raise CacheError(
                f"{seg_path}: journal segment of another format ({', '.join(fmt.differences(seg.fmt))})"
            )
        segments.append(seg)
    return segments


# ---------------------------------------------------------------------------------------------------------
# Merging a file with its journal


@dataclass
class _Merged:
    """The visible content: faces sorted by path with where each payload lives, failures sorted by path."""

    faces: _Faces
    source: np.ndarray  # 0 = the HDF5 file, 1 = the journal
    index: np.ndarray  # index into that source
    failures: _Failures
    journal_payloads: list[np.ndarray]
    segments: list[int]  # numbers of the journal segments shown


def _merge(base: _FileStore, segments: Sequence[_Segment]) -> _Merged:
    """Overlay journal segments on the file; for each path the entry added last wins."""
    if not segments:
        n = len(base.faces.paths)
        return _Merged(base.faces, np.zeros(n, np.int8), np.arange(n), base.failures, [], [])
    nbase = len(base.faces.paths)
    faces = _Faces.concat([base.faces, *(s.faces for s in segments)])
    failures = [*base.failures.items()]
    payloads = [p for s in segments for p in s.payloads]
    winner: dict[str, tuple[str, int]] = {p: ("face", i) for i, p in enumerate(base.faces.paths)}
    winner |= {f.path: ("failure", i) for i, f in enumerate(failures)}
    face_i = nbase
    for seg in segments:
        fi, xi = 0, 0
        seg_failures = seg.failures.items()
        for kind in seg.kinds:
            if kind == "face":
                winner[seg.faces.paths[fi]] = ("face", face_i)
                fi += 1
                face_i += 1
            else:
                winner[seg_failures[xi].path] = ("failure", len(failures))
                failures.append(seg_failures[xi])
                xi += 1
    keep = sorted((p, i) for p, (kind, i) in winner.items() if kind == "face")
    keep_idx = np.array([i for _, i in keep], np.int64)
    kept_failures = sorted(
        (failures[i] for p, (kind, i) in winner.items() if kind == "failure"), key=lambda f: f.path
    )
    source = (keep_idx >= nbase).astype(np.int8)
    index = np.where(source == 1, keep_idx - nbase, keep_idx)
    kept = _Failures.from_items(kept_failures)
    return _Merged(faces.take(keep_idx), source, index, kept, payloads, [s.seq for s in segments])


# ---------------------------------------------------------------------------------------------------------
# Reading


class FaceCache:
    """A face cache opened for reading: metadata in memory, images decoded on demand."""

    def __init__(self, path: Path, base: _FileStore, merged: _Merged) -> None:
        self.path = path
        self._base = base
        self._merged = merged
        self._format = base.format
        self.meta: dict[str, Any] = base.meta
        self.identities: list[str] = sorted(set(merged.faces.identities))
        index = {name: i for i, name in enumerate(self.identities)}
        self.labels: np.ndarray = np.array([index[n] for n in merged.faces.identities], np.int64)
        self.paths: list[str] = merged.faces.paths
        self.sizes: np.ndarray = merged.faces.sizes
        self.mtimes_ns: np.ndarray = merged.faces.mtimes
        self.boxes: np.ndarray = merged.faces.boxes
        self.scores: np.ndarray = merged.faces.scores
        self.detected: np.ndarray = merged.faces.detected
        self.failures: list[Failure] = merged.failures.items()

    @property
    def image_size(self) -> int:
        return self._format.image_size

    @property
    def encoding(self) -> str:
        return self._format.encoding

    @property
    def jpeg_quality(self) -> int:
        return self._format.jpeg_quality

    @property
    def format(self) -> CacheFormat:
        return self._format

    def __len__(self) -> int:
        return len(self.paths)

    def __enter__(self) -> FaceCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._base.close()

    def resume_keys(self) -> set[tuple[str, int, int]]:
        """(path, size, mtime_ns) of every face and failure: the resume keys."""
        keys = {(p, int(s), int(m)) for p, s, m in zip(self.paths, self.sizes, self.mtimes_ns, strict=True)}
        return keys | {(f.path, int(f.size), int(f.mtime_ns)) for f in self.failures}

    def record(self, i: int) -> FaceRecord:
        """The full record of face `i` (decodes its image)."""
        box = None if np.isnan(self.boxes[i]).any() else tuple(float(v) for v in self.boxes[i])
        return FaceRecord(
            self.paths[i],
            self.identities[self.labels[i]],
            int(self.sizes[i]),
            int(self.mtimes_ns[i]),
            self.read_faces(np.array([i]))[0],
            box,  # type: ignore[arg-type]
            float(self.scores[i]),
            bool(self.detected[i]),
        )

    def read_faces(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(n, S, S, 3) uint8 RGB faces at `indices` (all faces when None), in the order asked."""
        s, n = self.image_size, len(self)
        if indices is None:
            idx = None
            out = np.empty((n, s, s, 3), np.uint8)
        else:
            idx = np.asarray(indices, np.int64).reshape(-1)
            if len(idx) and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"face index out of range for a cache of {n} faces")
            idx = np.where(idx < 0, idx + n, idx)
            out = np.empty((len(idx), s, s, 3), np.uint8)
        source, index = self._merged.source, self._merged.index
        if not source.any():
            self._base.read_faces(None if idx is None else index[idx], out)
            return out
        wanted = np.arange(n) if idx is None else idx
        from_file = source[wanted] == 0
        if from_file.any():
            part = np.empty((int(from_file.sum()), s, s, 3), np.uint8)
            self._base.read_faces(index[wanted[from_file]], part)
            out[from_file] = part
        journal_pos = np.flatnonzero(~from_file)
        payloads = [self._merged.journal_payloads[index[wanted[k]]] for k in journal_pos]
        if self.encoding == "raw":
            for k, p in zip(journal_pos, payloads, strict=True):
                out[k] = p
        else:
            part = np.empty((len(payloads), s, s, 3), np.uint8)
            _decode_into(payloads, part, str(journal_dir(self.path)))
            out[journal_pos] = part
        return out

    def _payloads(self, idx: np.ndarray) -> list[np.ndarray]:
        """Stored payloads (JPEG bytes or raw arrays) of faces `idx`, for copying without re-encoding."""
        source, index = self._merged.source[idx], self._merged.index[idx]
        it = iter(self._base.payloads(index[source == 0]))
        journal = self._merged.journal_payloads
        return [next(it) if src == 0 else journal[i] for src, i in zip(source, index, strict=True)]

    def _payload_sizes(self, idx: np.ndarray) -> np.ndarray:
        """Stored bytes of each face `idx`, known without reading the images."""
        source, index = self._merged.source[idx], self._merged.index[idx]
        sizes = np.zeros(len(idx), np.int64)
        sizes[source == 0] = self._base.payload_sizes(index[source == 0])
        sizes[source == 1] = [self._merged.journal_payloads[i].nbytes for i in index[source == 1]]
        return sizes


@dataclass
class _Selection:
    """Faces of one or more opened caches in output order: row r is face `index[r]` of `caches[which[r]]`."""

    caches: Sequence[FaceCache]
    which: np.ndarray
    index: np.ndarray

    def _by_cache(self, rows: np.ndarray) -> Iterator[tuple[FaceCache, np.ndarray]]:
        for k, cache in enumerate(self.caches):
            pos = np.flatnonzero(self.which[rows] == k)
            if len(pos):
                yield cache, pos

    def sizes(self) -> np.ndarray:
        rows = np.arange(len(self.index))
        out = np.zeros(len(rows), np.int64)
        for cache, pos in self._by_cache(rows):
            out[pos] = cache._payload_sizes(self.index[pos])
        return out

    def payloads(self, start: int, stop: int) -> list[np.ndarray]:
        rows = np.arange(start, stop)
        out: list[Any] = [None] * len(rows)
        for cache, pos in self._by_cache(rows):
            for j, payload in zip(pos, cache._payloads(self.index[rows[pos]]), strict=True):
                out[j] = payload
        return out


def _identity(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1, -1)
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _open(path: Path) -> tuple[_FileStore, list[_Segment]]:
    """The file and its journal as one snapshot: retried when a writer replaced the file meanwhile."""
    for _attempt in range(10):
        before = _identity(path)
        base = _FileStore(path)
        try:
            segments = _read_journal(path, base.journal_through, base.format)
            if _identity(path) == before:
                return base, segments
            base.close()
        except _JournalMoved:
            base.close()
        except BaseException:
            base.close()
            raise
    raise CacheError(f"{path}: the cache kept changing while it was being opened")


def open_cache(path: str | os.PathLike[str]) -> FaceCache:
    """Open a face cache for reading, including records committed to its journal but not yet consolidated.

    Raises CacheError naming the file when it is missing, not a face cache, of another format version,
    truncated or corrupted.
    """
    path = Path(path)
    base, segments = _open(path)
    try:
        return FaceCache(path, base, _merge(base, segments))
    except BaseException:
        base.close()
        raise


# ---------------------------------------------------------------------------------------------------------
# Writing


def _consolidate(path: Path, meta: dict[str, Any] | None) -> tuple[CacheFormat, int, int]:
    """Fold the journal into a new cache file, replace the old one, delete the journal.

    Returns the format, the last folded segment number and the new file size. Caller holds the lock.
    """
    with open_cache(path) as cache:
        folded = cache._merged.segments
        through = max([cache._base.journal_through, *folded])
        if folded or (meta is not None and meta != cache.meta):
            n = len(cache)
            selection = _Selection([cache], np.zeros(n, np.int64), np.arange(n))
            new_meta = cache.meta if meta is None else meta
            _write_file(
                path, cache.format, new_meta, through, cache._merged.faces, cache._merged.failures, selection
            )
    _clear_journal(path, through)
    return cache.format, through, path.stat().st_size


def _clear_journal(path: Path, through: int) -> None:
    """Delete segments already folded into the file, temp files, and the directory once empty."""
    directory = journal_dir(path)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        stem = p.name[: -len(_SEGMENT_SUFFIX)] if p.name.endswith(_SEGMENT_SUFFIX) else ""
        if p.name.endswith(_TMP_SUFFIX) or (stem.isdigit() and int(stem) <= through):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


class _Lock:
    """An exclusive flock on the cache's lock file, held for the writer's lifetime."""

    def __init__(self, path: Path) -> None:
        self.file = lock_path(path)
        try:
            self.fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheError(
                f"{path}: cannot create the lock file {self.file} ({exc.strerror or exc})"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise CacheError(
                f"{path}: another process is writing this cache (lock {self.file} is held)"
            ) from None

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


class CacheWriter:
    """Adds face records and failures to a cache; `commit()` makes the added ones durable.

    Each commit writes one journal segment; the journal is folded into the HDF5 file when it has grown
    as big as the file (at least `consolidate_bytes`), after `consolidate_seconds`, and at close.
    Appending to an existing cache requires the same image size, encoding and JPEG quality. `meta`
    (detector and settings, JSON-serialisable) replaces the stored one at consolidation; None keeps it.
    Leaving the `with` block by an exception drops records added since the last commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_size: int = 160,
        encoding: str = CACHE_DEFAULTS.encoding,
        meta: dict[str, Any] | None = None,
        *,
        jpeg_quality: int = CACHE_DEFAULTS.jpeg_quality,
        consolidate_bytes: int = CACHE_DEFAULTS.consolidate_bytes,
        consolidate_seconds: float = CACHE_DEFAULTS.consolidate_seconds,
    ) -> None:
        if encoding not in ENCODINGS:
            raise UsageError(f"cache encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
        if not 1 <= jpeg_quality <= 100:
            raise UsageError(f"jpeg_quality {jpeg_quality}: expected 1..100")
        if image_size < 1:
            raise UsageError(f"image_size {image_size}: expected a positive number of pixels")
        if meta is not None:
            try:
                json.dumps(meta)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"cache meta is not JSON-serialisable ({exc})") from None
        self.path = Path(path)
        self.format = CacheFormat(int(image_size), encoding, int(jpeg_quality) if encoding == "jpeg" else 0)
        self._meta = meta
        self._consolidate_bytes = consolidate_bytes
        self._consolidate_seconds = consolidate_seconds
        self._pending: list[tuple[FaceRecord | Failure, np.ndarray | None]] = []
        if not self.path.parent.is_dir():
            raise CacheError(f"{self.path}: directory {self.path.parent} does not exist")
        self._lock = _Lock(self.path)
        try:
            self._open_or_create()
        except BaseException:
            self._lock.release()
            raise

    def _open_or_create(self) -> None:
        self.path.with_name(self.path.name + _TMP_SUFFIX).unlink(missing_ok=True)
        if not self.path.exists():
            _clear_journal(self.path, 1 << 62)  # a journal without its cache file is an orphan
            _write_file(self.path, self.format, self._meta or {}, 0, _Faces(), _Failures(), None)
        base = _FileStore(self.path)
        try:
            diff = self.format.differences(base.format)
        finally:
            base.close()
        if diff:
            raise CacheError(
                f"{self.path}: cannot append: the cache has {'; '.join(diff)} (cache vs this run)"
            )
        _, self._through, self._file_bytes = _consolidate(self.path, self._meta)
        with open_cache(self.path) as cache:
            self._keys = cache.resume_keys()
        self._journal_bytes = 0
        self._last_consolidation = time.monotonic()
        self._closed = False

    def known_keys(self) -> set[tuple[str, int, int]]:
        """(path, size, mtime_ns) of everything in the cache or added to this writer, faces and failures."""
        return set(self._keys)

    def add(self, item: FaceRecord | Failure) -> None:
        """Queue a face record or a failure; it becomes durable at the next commit."""
        if self._closed:
            raise CacheError(f"{self.path}: the writer is closed")
        if isinstance(item, Failure):
            self._pending.append((item, None))
        elif isinstance(item, FaceRecord):
            s = self.format.image_size
            face = np.asarray(item.face)
            if face.shape != (s, s, 3) or face.dtype != np.uint8:
                raise ValueError(
                    f"{item.path}: face must be ({s}, {s}, 3) uint8, got {face.shape} {face.dtype}"
                )
            self._pending.append((item, _encode(face, self.format)))
        else:
            raise TypeError(f"expected FaceRecord or Failure, got {type(item).__name__}")
        self._keys.add((item.path, int(item.size), int(item.mtime_ns)))

    def commit(self) -> None:
        """Make every record added so far durable; consolidate when the journal has grown enough."""
        if self._closed:
            raise CacheError(f"{self.path}: the writer is closed")
        if self._pending:
            directory = journal_dir(self.path)
            try:
                directory.mkdir(exist_ok=True)
            except OSError as exc:
                raise CacheError(f"{directory}: cannot create the journal ({exc.strerror or exc})") from None
            self._through += 1
            self._journal_bytes += _write_segment(directory, self._through, self.format, self._pending)
            self._pending = []
        grown = self._journal_bytes >= max(self._consolidate_bytes, self._file_bytes)
        stale = time.monotonic() - self._last_consolidation >= self._consolidate_seconds
        if self._journal_bytes and (grown or stale):
            self.consolidate()

    def consolidate(self) -> None:
        """Fold the journal into the HDF5 file now (atomic replace)."""
        _, self._through, self._file_bytes = _consolidate(self.path, self._meta)
        self._journal_bytes = 0
        self._last_consolidation = time.monotonic()

    def close(self, *, commit: bool = True) -> None:
        """Commit (unless told not to), consolidate and release the lock."""
        if self._closed:
            return
        try:
            if commit:
                self.commit()
            self._pending = []
            self.consolidate()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):
            self.close(commit=False)
        self._lock.release()


def write_selection(
    path: str | os.PathLike[str],
    parts: Sequence[tuple[FaceCache, Sequence[int], Sequence[Failure]]],
    meta: dict[str, Any],
) -> None:
    """Write a new consolidated cache from faces of opened caches, copying the stored bytes unchanged.

    `parts` are (cache, face indices, failures); all caches must share one format and every path must
    occur once. The output must not be one of the inputs.
    """
    path = Path(path)
    if not parts:
        raise UsageError("no input caches")
    fmt = parts[0][0].format
    for cache, _, _ in parts[1:]:
        diff = fmt.differences(cache.format)
        if diff:
            raise CacheError(f"{cache.path}: cannot combine with {parts[0][0].path}: {'; '.join(diff)}")
    for cache, _, _ in parts:
        if path.exists() and path.resolve() == cache.path.resolve():
            raise UsageError(f"{path}: refusing to overwrite an input cache")
    if not path.parent.is_dir():
        raise CacheError(f"{path}: directory {path.parent} does not exist")
    tables, which, index = [], [], []
    for k, (cache, indices, _) in enumerate(parts):
        idx = np.asarray(indices, np.int64).reshape(-1)
        tables.append(cache._merged.faces.take(idx))
        which.append(np.full(len(idx), k, np.int64))
        index.append(idx)
    faces = _Faces.concat(tables)
    order = np.array(sorted(range(len(faces.paths)), key=faces.paths.__getitem__), np.int64)
    faces = faces.take(order)
    for a, b in itertools.pairwise(faces.paths):
        if a == b:
            raise UsageError(f"{a}: the same path is selected twice")
    selection = _Selection(
        [c for c, _, _ in parts], np.concatenate(which)[order], np.concatenate(index)[order]
    )
    failures = _Failures.from_items(sorted((f for _, _, fs in parts for f in fs), key=lambda f: f.path))
    lock = _Lock(path)
    try:
        _write_file(path, fmt, meta, 0, faces, failures, selection)
        _clear_journal(path, 1 << 62)
    finally:
        lock.release()
