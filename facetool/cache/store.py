"""The consolidated HDF5 file: reading one (images lazily) and writing one whole, atomically."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from facetool import __version__
from facetool.cache.codec import decode_into
from facetool.cache.records import (
    ENCODINGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    CacheFormat,
    FaceColumns,
    FailureColumns,
)
from facetool.errors import CacheError
from facetool.files import atomic_output

_WRITE_BLOCK = 1024
_GAP_BYTES = 1 << 16  # faces closer than this are read in one span, skipping the bytes between


def _runs(ranked: np.ndarray, starts: np.ndarray, ends: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """Cut sorted face indices into [lo, hi) runs: a new run starts where the gap before a face exceeds `gap`."""
    cuts = np.flatnonzero(starts[1:] - ends[:-1] > gap) + 1
    bounds = [0, *cuts.tolist(), len(ranked)]
    return list(itertools.pairwise(bounds))


class PayloadSource(Protocol):
    """Stored payloads of the faces to write, in output order."""

    def sizes(self) -> np.ndarray: ...

    def payloads(self, start: int, stop: int) -> list[np.ndarray]: ...


def h5_errors(where: Path | str) -> contextlib.AbstractContextManager:
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


def _refuse_foreign_storage(group: h5py.Group, path: Path) -> None:
    """Refuse external and soft links, external and virtual datasets: a cache holds its own bytes only."""
    for name in group:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise CacheError(f"{path}: {group.name}/{name} is an external link; refusing the face cache")
        if isinstance(link, h5py.SoftLink):
            raise CacheError(f"{path}: {group.name}/{name} is a soft link; refusing the face cache")
        obj = group[name]
        if isinstance(obj, h5py.Group):
            _refuse_foreign_storage(obj, path)
        elif isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            kind = "external storage" if obj.external else "a virtual dataset"
            raise CacheError(f"{path}: {obj.name} uses {kind}; refusing the face cache")


class FileStore:
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
        self._pid = os.getpid()
        st = os.stat(self.h5.id.get_vfd_handle())
        self._inode = (st.st_dev, st.st_ino)
        try:
            self._load()
        except BaseException:
            self.h5.close()
            raise

    def _load(self) -> None:
        path = self.path
        with h5_errors(path):
            _refuse_foreign_storage(self.h5, path)
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
            if names != sorted(set(names)):
                raise CacheError(f"{path}: identity names are not sorted and unique")
            labels = _member(g, "label")[:].astype(np.int64)
            n = len(labels)
            if n and (labels.min() < 0 or labels.max() >= len(names)):
                raise CacheError(f"{path}: face labels out of range of the identities")
            path_column = _member(g, "path")
            self.faces = FaceColumns(
                names,
                labels,
                _member(g, "size")[:].astype(np.int64),
                _member(g, "mtime_ns")[:].astype(np.int64),
                _member(g, "box")[:].astype(np.float32).reshape(-1, 4),
                _member(g, "score")[:].astype(np.float32),
                _member(g, "detected")[:].astype(bool),
                g["landmarks"][:].astype(np.float32) if "landmarks" in g else None,  # older caches have none
                load_paths=lambda: self._read_strings("faces/path"),
            )
            self.failures = FailureColumns(
                [str(s) for s in _member(f, "path").asstr()[:]],
                [str(s) for s in _member(f, "identity").asstr()[:]],
                [int(v) for v in _member(f, "size")[:]],
                [int(v) for v in _member(f, "mtime_ns")[:]],
                [str(s) for s in _member(f, "reason").asstr()[:]],
            )
            columns = [path_column.shape[0], len(self.faces.sizes), len(self.faces.mtimes)]
            columns += [len(self.faces.boxes), len(self.faces.scores), len(self.faces.detected)]
            columns += [len(self.faces.landmarks)]
            if self.format.encoding == "jpeg":
                self.offsets = _member(g, "jpeg_offset")[:].astype(np.int64)
                blob = _member(g, "jpeg")
                ordered = (
                    len(self.offsets) == n + 1 and self.offsets[0] == 0 and (np.diff(self.offsets) > 0).all()
                )
                if not ordered or self.offsets[-1] != blob.shape[0]:
                    raise CacheError(f"{path}: JPEG offsets do not match the stored bytes")
            else:
                images = _member(g, "image")
                s = self.format.image_size
                if images.shape != (n, s, s, 3):
                    raise CacheError(f"{path}: image array has shape {images.shape}, expected {(n, s, s, 3)}")
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

    def file(self) -> h5py.File:
        """The open HDF5 file, valid in this process: a forked worker gets its own handle on the same file
        (an HDF5 handle must not be shared across fork), even when a writer replaced the path since."""
        if self._pid != os.getpid():
            self.h5 = self._reopen()
            self._pid = os.getpid()
        return self.h5

    def _reopen(self) -> h5py.File:
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                return h5py.File(self.path, "r", locking=False)
        try:  # replaced meanwhile: the inherited descriptor still names the file; open it afresh
            handle = open(f"/proc/self/fd/{self.h5.id.get_vfd_handle()}", "rb")  # noqa: SIM115
            st = os.fstat(handle.fileno())
            if (st.st_dev, st.st_ino) == self._inode:
                return h5py.File(handle, "r", locking=False)
            handle.close()
        except OSError:
            pass
        raise CacheError(f"{self.path}: replaced since it was opened; open the cache again in this process")

    @property
    def blob(self) -> h5py.Dataset:
        return self.file()["faces/jpeg"]

    @property
    def images(self) -> h5py.Dataset:
        return self.file()["faces/image"]

    def _read_strings(self, name: str) -> list[str]:
        """A string column of the file, e.g. the face paths, read when first needed (also after close)."""
        with h5_errors(self.path):
            if self.h5:
                return [str(s) for s in _member(self.file(), name).asstr()[:]]
            with self._reopen() as h5:
                return [str(s) for s in _member(h5, name).asstr()[:]]

    def payloads(self, idx: np.ndarray) -> list[np.ndarray]:
        """Stored payloads of the given face indices (JPEG bytes or raw arrays), in the order given.

        The indices are sorted and cut into runs whose bytes lie close together; each run is one read.
        """
        if len(idx) == 0:
            return []
        idx = np.asarray(idx, np.int64)
        order = np.argsort(idx, kind="stable")
        ranked = idx[order]
        out: list[Any] = [None] * len(idx)
        with h5_errors(self.path):
            for lo, hi in _runs(ranked, self._starts(ranked), self._starts(ranked + 1), _GAP_BYTES):
                rows = ranked[lo:hi]
                if self.format.encoding == "jpeg":
                    base = int(self.offsets[rows[0]])
                    span = self.blob[base : int(self.offsets[rows[-1] + 1])]
                    parts = [span[self.offsets[i] - base : self.offsets[i + 1] - base] for i in rows]
                else:
                    block = self.images[int(rows[0]) : int(rows[-1]) + 1]
                    parts = [block[i - rows[0]] for i in rows]
                for k, part in zip(order[lo:hi], parts, strict=True):
                    out[k] = part
        return out

    def _starts(self, idx: np.ndarray) -> np.ndarray:
        """Byte position where face `idx` starts in its dataset (idx may be one past the last)."""
        if self.format.encoding == "jpeg":
            return self.offsets[idx]
        return idx * (self.format.image_size**2 * 3)

    def payload_sizes(self, idx: np.ndarray) -> np.ndarray:
        if self.format.encoding == "raw":
            return np.full(len(idx), self.format.image_size**2 * 3, np.int64)
        return self.offsets[idx + 1] - self.offsets[idx]

    def read_faces(self, idx: np.ndarray | None, out: np.ndarray) -> None:
        """Decode the faces at `idx` (all when None) into `out`; whole reads go through one blob read."""
        with h5_errors(self.path):
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
                payloads = self.payloads(idx)
        decode_into(payloads, out, str(self.path))

    def close(self) -> None:
        self.h5.close()


def write_file(
    path: Path,
    fmt: CacheFormat,
    meta: dict[str, Any],
    journal_through: int,
    faces: FaceColumns,
    failures: FailureColumns,
    selection: PayloadSource | None,
) -> None:
    """Write a complete cache to a temporary file beside `path`, fsync it and move it over `path`.

    `faces` must be sorted by path; `selection` gives their stored payloads in the same order.
    Identities are sorted by name and labels assigned here, so equal content gives an equal file.
    """
    faces = faces.compact()
    names, labels = faces.names, faces.labels
    n, s = len(faces), fmt.image_size
    strings = h5py.string_dtype("utf-8")
    try:
        with atomic_output(path, make_parent=False) as tmp, h5py.File(tmp, "w", locking=False) as h5:
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
            g.create_dataset("landmarks", data=faces.landmarks)
            _write_images(g, fmt, n, selection)
            f = h5.create_group("failures")
            f.create_dataset("path", data=np.array(failures.paths, dtype=object), dtype=strings)
            f.create_dataset("identity", data=np.array(failures.identities, dtype=object), dtype=strings)
            f.create_dataset("size", data=np.array(failures.sizes, np.int64))
            f.create_dataset("mtime_ns", data=np.array(failures.mtimes, np.int64))
            f.create_dataset("reason", data=np.array(failures.reasons, dtype=object), dtype=strings)
    except IsADirectoryError:
        raise CacheError(f"{path}: is a folder; name a cache file to write") from None
    except OSError as exc:
        raise CacheError(f"{path}: cannot write the face cache ({exc.strerror or exc})") from None


def _write_images(g: h5py.Group, fmt: CacheFormat, n: int, selection: PayloadSource | None) -> None:
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
