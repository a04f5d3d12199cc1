"""Where `facetool embed` writes: one writer per output format, each appending batches to a temporary file that
`open_writer` renames into place only when complete. The `.h5` export is a plain HDF5 file of embeddings, not a
face cache."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from facetool.errors import FacetoolError, UsageError
from facetool.files import atomic_output, make_dir, stop_signals_held, temp_path_for


@dataclass
class EmbeddingSet:
    """Embeddings with the path, identity and detection flag of each row, and how they were made."""

    embeddings: np.ndarray
    paths: list[str]
    identities: list[str]
    detected: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class EmbedSummary:
    """What an export wrote: the number of rows, the embedding size, and the images that were skipped."""

    count: int = 0
    dim: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


class EmbeddingWriter:
    """Appends batches of rows to a temporary file; `finish` completes it. Subclasses: one per format."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def add(
        self, embeddings: np.ndarray, paths: list[str], identities: list[str], detected: list[bool]
    ) -> None:
        raise NotImplementedError

    def finish(self, settings: dict[str, Any]) -> None:
        """Write what only the end knows (settings, counts) and close the file."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close whatever is open after a failure (the temporary file is removed by the caller)."""


class CsvWriter(EmbeddingWriter):
    """`path,identity,detected,e0..` rows, written as they come."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.handle = tmp.open("w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.header = False

    def add(
        self, embeddings: np.ndarray, paths: list[str], identities: list[str], detected: list[bool]
    ) -> None:
        if not self.header:
            dim = embeddings.shape[1]
            self.writer.writerow(["path", "identity", "detected", *(f"e{i}" for i in range(dim))])
            self.header = True
        for row, (p, ident, det) in enumerate(zip(paths, identities, detected, strict=True)):
            self.writer.writerow([p, ident, int(det), *(f"{v:.8g}" for v in embeddings[row])])

    def finish(self, settings: dict[str, Any]) -> None:
        self.handle.close()

    def abort(self) -> None:
        self.handle.close()


class H5Writer(EmbeddingWriter):
    """Resizable chunked datasets `embeddings`, `paths`, `identities`, `detected`, grown batch by batch."""

    CHUNK_ROWS = 1024

    def __init__(self, tmp: Path) -> None:
        import h5py

        super().__init__(tmp)
        self.h5 = h5py.File(tmp, "w")
        self.strings = h5py.string_dtype("utf-8")
        self.count = 0

    def _append(
        self, name: str, data: np.ndarray | list[Any], dtype: Any, tail: tuple[int, ...] = ()
    ) -> None:
        if name not in self.h5:
            chunks = (self.CHUNK_ROWS, *tail)
            self.h5.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=chunks)
        dataset = self.h5[name]
        dataset.resize(self.count + len(data), axis=0)
        dataset[self.count :] = data

    def add(
        self, embeddings: np.ndarray, paths: list[str], identities: list[str], detected: list[bool]
    ) -> None:
        self._append("embeddings", embeddings, np.float32, (embeddings.shape[1],))
        self._append("paths", paths, self.strings)
        self._append("identities", identities, self.strings)
        self._append("detected", np.asarray(detected, dtype=bool), bool)
        self.count += len(paths)

    def finish(self, settings: dict[str, Any]) -> None:
        self.h5.attrs["format"] = "facetool-embeddings"
        self.h5.attrs["format_version"] = 1
        self.h5.attrs["settings"] = json.dumps(settings)
        self.h5.close()

    def abort(self) -> None:
        self.h5.close()


class _Spool:
    """One column of an .npz, spooled to a side file as it comes and streamed into its .npy member at the end.

    Numbers are stored raw; strings UTF-8, each ended by NUL (which no path or identity holds), and re-encoded
    at the end in chunks to the fixed width the .npy format needs (the longest string, tracked on the way).
    """

    CHUNK = 65536

    def __init__(self, beside: Path, dtype: str | None) -> None:
        self.path = temp_path_for(beside)
        try:
            self.handle = self.path.open("wb")
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        self.dtype = dtype
        self.rows = 0
        self.width = 1
        self.tail: tuple[int, ...] = ()

    def add(self, values: np.ndarray | list[str]) -> None:
        if self.dtype is None:
            strings = list(values)
            self.width = max([self.width, *(len(v) for v in strings)])
            self.handle.write(b"".join(v.encode("utf-8") + b"\0" for v in strings))
        else:
            array = np.ascontiguousarray(values, dtype=self.dtype)
            self.tail = array.shape[1:]
            self.handle.write(array.tobytes())
        self.rows += len(values)

    def write_member(self, member: IO[bytes]) -> None:
        """Write this column as one .npy file to `member`, reading the side file a chunk at a time."""
        self.handle.close()
        dtype = np.dtype(self.dtype or f"<U{self.width}")
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.tail),
        }
        np.lib.format.write_array_header_2_0(member, header)
        with self.path.open("rb") as spool:
            if self.dtype is not None:
                shutil.copyfileobj(spool, member, self.CHUNK * 16)
                return
            rest = b""
            while block := spool.read(self.CHUNK * 16):
                *items, rest = (rest + block).split(b"\0")
                member.write(np.array([b.decode("utf-8") for b in items], dtype=dtype).tobytes())

    def remove(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


class NpzWriter(EmbeddingWriter):
    """Every column is spooled to a side file as it comes; `finish` streams them into the .npz members."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.columns: dict[str, _Spool] = {}
        try:
            for name, dtype in (
                ("embeddings", "<f4"),
                ("paths", None),
                ("identities", None),
                ("detected", "|b1"),
            ):
                with stop_signals_held():
                    self.columns[name] = _Spool(tmp, dtype)
        except BaseException:
            self.abort()
            raise

    def add(
        self, embeddings: np.ndarray, paths: list[str], identities: list[str], detected: list[bool]
    ) -> None:
        for name, values in zip(self.columns, (embeddings, paths, identities, detected), strict=True):
            self.columns[name].add(values)

    def finish(self, settings: dict[str, Any]) -> None:
        try:
            with zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, column in self.columns.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        column.write_member(member)
                with archive.open("settings.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.array(json.dumps(settings)), allow_pickle=False)
        finally:
            self.abort()

    def abort(self) -> None:
        for column in self.columns.values():
            column.remove()


WRITERS: dict[str, type[EmbeddingWriter]] = {".h5": H5Writer, ".npz": NpzWriter, ".csv": CsvWriter}


def check_output_path(path: str | Path) -> Path:
    """The output path when its extension has a writer; UsageError listing the known ones otherwise."""
    path = Path(path)
    if path.suffix.lower() not in WRITERS:
        known = ", ".join(WRITERS)
        raise UsageError(f"{path}: unknown output extension {path.suffix!r} (use one of {known})")
    return path


@contextmanager
def open_writer(path: str | Path) -> Iterator[EmbeddingWriter]:
    """A writer for the format of `path`'s extension on a temporary file, renamed to `path` when the block
    ends cleanly; on any failure `path` keeps its previous content. OS errors become one FacetoolError line."""
    path = check_output_path(path)
    try:
        make_dir(path.parent, "folder of the output")
    except FacetoolError as exc:
        raise FacetoolError(f"{path}: cannot create its folder {path.parent} ({exc})") from None
    try:
        with atomic_output(path, make_parent=False) as tmp:
            writer = WRITERS[path.suffix.lower()](tmp)
            try:
                yield writer
            except BaseException:
                writer.abort()
                raise
    except OSError as exc:
        raise FacetoolError(f"{path}: cannot write embeddings ({exc.strerror or exc})") from None


def write_embeddings(result: EmbeddingSet, path: str | Path) -> Path:
    """Write `result` in the format named by the extension of `path` (.h5, .npz or .csv), atomically."""
    path = check_output_path(path)
    with open_writer(path) as writer:
        writer.add(result.embeddings, list(result.paths), list(result.identities), list(result.detected))
        writer.finish(result.settings)
    return path
