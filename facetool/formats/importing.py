"""`facetool dataset import`: a RecordIO set, an im2rec `.lst` with its images, or a verification pack into a
face cache, the encoded images stored as they are (never decoded or re-encoded).

The faces of these sources came aligned by their makers (insightface's five-point template at 112 px, no
detector run here); the cache's meta records that under `detector`, `alignment` and `imported_from`
(docs/cache-format.md). Identities are named by class, zero-padded so that their sorted order is the class
order; an image's path is `<class>/<key>.jpg`. Two passes over the source: the first reads each record's
header and size, the second copies the bytes into the cache block by block, so memory holds the metadata
columns and one block of images. The cache is written whole to a temporary name (`write_payloads`): an error
or a kill leaves no partial cache.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache import write_payloads
from facetool.cache.records import CacheFormat, FaceColumns
from facetool.config.dataset import CACHE_DEFAULTS
from facetool.errors import FacetoolError, UsageError
from facetool.files import atomic_write_text, check_output_not_input, read_regular_file
from facetool.formats.images import image_shape, jpeg_header, jpeg_header_length
from facetool.formats.packs import read_pack
from facetool.formats.recordio import RecordIOError
from facetool.formats.recset import RecordSet

# insightface's five-point template for 112 x 112 crops (left eye, right eye, nose, mouth corners).
INSIGHTFACE_TEMPLATE_112 = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
]
MAX_LISTED_IMAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote: the cache, and for a pack the pairs file beside it."""

    output: Path
    source: Path
    kind: str
    images: int
    identities: int
    image_size: int
    jpeg_quality: int
    pairs: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def aligned_meta(image_size: int, source: Path, kind: str, **details: Any) -> dict[str, Any]:
    """The meta of a cache of faces aligned by their source: no detector, insightface's five-point template."""
    return {
        "detector": "none",
        "image_size": image_size,
        "alignment": {
            "method": "five-point similarity transform",
            "template": "insightface-112",
            "points": INSIGHTFACE_TEMPLATE_112,
            "template_size": 112,
            "done_by": "source",
        },
        "imported_from": {"path": str(source.resolve()), "format": kind, **details},
    }


class _Rows:
    """The payloads of an import in output order: `read(rows)` gives the bytes of those output rows."""

    def __init__(self, sizes: np.ndarray, read: Callable[[range], Sequence[bytes | np.ndarray]]) -> None:
        self._sizes = sizes
        self._read = read

    def sizes(self) -> np.ndarray:
        return self._sizes

    def payloads(self, start: int, stop: int) -> list[np.ndarray]:
        return [
            b if isinstance(b, np.ndarray) else np.frombuffer(b, np.uint8)
            for b in self._read(range(start, stop))
        ]


def _padded(values: np.ndarray) -> Callable[[int], str]:
    width = len(str(int(values.max()))) if len(values) else 1
    return lambda v: f"{v:0{width}d}"


def _check_output(output: Path, inputs: Sequence[Path]) -> None:
    if output.is_dir():
        raise UsageError(f"{output}: is a folder; -o must name the face cache file to write")
    if not output.parent.is_dir():
        raise UsageError(f"{output}: folder {output.parent} does not exist")
    check_output_not_input(output, inputs)


_PREFIXES = 8  # JPEG headers remembered (a set written by one encoder has one or a few)


class _Shape:
    """Checks every image has the size of the first and remembers the first JPEG's quality."""

    def __init__(self, expected: tuple[int, int] | None) -> None:
        self.size = expected
        self.quality: int | None = None
        self._prefixes: list[np.ndarray] = []  # header bytes of JPEGs that passed (`jpeg_header_length`)

    def check_block(
        self, data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, where: Callable[[int], str]
    ) -> None:
        """`check` of the images `data[starts[j] : starts[j] + sizes[j]]`, in order: an image that begins with the
        header bytes of a JPEG that passed has the same header, so it passes; the others are checked one by one
        (`where(j)` names image j in an error). Each comparison copies at most `len(data)` bytes."""
        pending = np.arange(len(starts))
        for prefix in self._prefixes:
            pending = pending[~self._starts_with(data, starts, sizes, pending, prefix)]
        learned = 0
        while len(pending):
            j, pending = int(pending[0]), pending[1:]
            known = self._prefixes[0] if self._prefixes else None
            start = int(starts[j])
            self.check(data[start : start + int(sizes[j])].tobytes(), where(j))
            if self._prefixes and self._prefixes[0] is not known and learned < _PREFIXES:
                learned += 1  # a new header: the images after it may share it
                pending = pending[~self._starts_with(data, starts, sizes, pending, self._prefixes[0])]

    @staticmethod
    def _starts_with(
        data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, rows: np.ndarray, prefix: np.ndarray
    ) -> np.ndarray:
        """Whether image `rows[k]` begins with `prefix`."""
        out = np.zeros(len(rows), bool)
        fits = np.flatnonzero(sizes[rows] >= len(prefix))
        if len(fits) and len(data) >= len(prefix):
            windows = np.lib.stride_tricks.sliding_window_view(data, len(prefix))
            out[fits] = (windows[starts[rows[fits]]] == prefix).all(axis=1)
        return out

    def check(self, data: bytes, where: str) -> None:
        header = jpeg_header(data)
        shape = header[:2] if header is not None else image_shape(data)
        if shape is None:
            raise FacetoolError(
                f"{where}: not a readable image (neither a JPEG header nor a decodable image)"
            )
        if self.quality is None and header is not None:
            self.quality = header[2]
        if self.size is None:
            self.size = shape
        if shape != self.size:
            raise FacetoolError(
                f"{where}: image is {shape[1]}x{shape[0]}, the others are {self.size[1]}x{self.size[0]}"
            )
        if shape[0] != shape[1]:
            raise FacetoolError(f"{where}: image is {shape[1]}x{shape[0]}; a face cache holds square faces")
        if header is not None:
            prefix = np.frombuffer(data[: jpeg_header_length(data)], np.uint8)
            if not any(np.array_equal(prefix, known) for known in self._prefixes):
                self._prefixes = [prefix, *self._prefixes[: _PREFIXES - 1]]

    def cache_format(self) -> CacheFormat:
        side = self.size[0] if self.size else 112
        return CacheFormat(side, "jpeg", self.quality or CACHE_DEFAULTS.jpeg_quality)


def _write(
    output: Path,
    shape: _Shape,
    keys: np.ndarray,
    labels: np.ndarray,
    sizes: np.ndarray,
    read: Callable[[np.ndarray], Sequence[bytes | np.ndarray]],
    meta: dict[str, Any],
) -> CacheFormat:
    """Write faces named `<class>/<key>.jpg` (sorted so, which is (class, key) order) with their bytes;
    `read(i)` gives the bytes of the images at source positions `i`."""
    order = np.lexsort((keys, labels))
    name_of, key_name = _padded(labels), _padded(keys)
    used = np.unique(labels)
    names = [name_of(int(v)) for v in used]
    rows = FaceColumns(
        names,
        np.searchsorted(used, labels[order]),
        sizes[order],
        np.zeros(len(order), np.int64),
        np.full((len(order), 4), math.nan, np.float32),
        np.full(len(order), math.nan, np.float32),
        np.zeros(len(order), bool),
        paths=[
            f"{name_of(c)}/{key_name(k)}.jpg"
            for c, k in zip(labels[order].tolist(), keys[order].tolist(), strict=True)
        ],
    )
    fmt = shape.cache_format()
    write_payloads(output, fmt, meta, rows, _Rows(sizes[order], lambda r: read(order[r.start : r.stop])))
    return fmt


def import_recordio(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> ImportReport:
    """Import a RecordIO set (the `.rec` or its folder; header-record or flat layout) into a face cache."""
    output = Path(output)
    with RecordSet(source) as records:
        inputs = [records.rec, *([records.idx] if records.idx else [])]
        _check_output(output, inputs)
        expected = records.property[1:] if records.property else None
        shape = _Shape(expected)

        def check(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, keys: np.ndarray) -> None:
            shape.check_block(data, starts, sizes, lambda j: f"{records.rec}: key {int(keys[j])}")

        cols = records.image_columns(check)
        if not len(cols):
            raise RecordIOError(f"{records.rec}: holds no image records")

        def read(idx: np.ndarray) -> list[bytes | np.ndarray]:
            out: list[bytes | np.ndarray] = [b""] * len(idx)
            whole = np.flatnonzero(cols.starts[idx] >= 0)
            at = idx[whole]
            spans = records.reader.read_spans(
                cols.offsets[at], cols.lrecords[at], cols.starts[at], cols.sizes[at], cols.keys[at]
            )
            for j, span in zip(whole.tolist(), spans, strict=True):
                out[j] = span
            for j in np.flatnonzero(cols.starts[idx] < 0).tolist():
                i = int(idx[j])
                out[j] = records.reader.read_record(int(cols.offsets[i]), int(cols.keys[i])).image
            return out

        meta = aligned_meta(
            (shape.size or (0, 0))[0], records.rec, "mxnet-recordio", layout=records.layout, records=len(cols)
        )
        fmt = _write(output, shape, cols.keys, cols.labels, cols.sizes, read, meta)
    return ImportReport(
        output,
        records.rec,
        "recordio",
        len(cols),
        len(np.unique(cols.labels)),
        fmt.image_size,
        fmt.jpeg_quality,
    )


def _parse_list(path: Path) -> list[tuple[int, int, str]]:
    """(key, class, relative path) of every line of an im2rec `.lst` (`key<TAB>label...<TAB>path`)."""
    text = read_regular_file(path, limit=1 << 30, what="image list").decode("utf-8", errors="strict")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}: line {number}"
        if len(fields) < 3:
            raise UsageError(f"{where}: expected `key<TAB>label<TAB>path`")
        try:
            key, label = int(fields[0]), float(fields[1])
        except ValueError:
            raise UsageError(f"{where}: key and label must be numbers") from None
        if label < 0 or label != int(label):
            raise UsageError(f"{where}: label {fields[1]} is not a class number")
        rel = fields[-1].strip()
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise UsageError(f"{where}: {rel!r} must be a path inside the image folder")
        rows.append((key, int(label), rel))
    return rows


def import_list(
    lst: str | os.PathLike[str], images: str | os.PathLike[str] | None, output: str | os.PathLike[str]
) -> ImportReport:
    """Import an im2rec `.lst` and its image folder (default: the list's folder): each file stored as it is."""
    lst, output = Path(lst), Path(output)
    root = Path(images) if images is not None else lst.parent
    rows = _parse_list(lst)
    if not rows:
        raise UsageError(f"{lst}: lists no images")
    _check_output(output, [lst, root])
    shape = _Shape(None)
    sizes = []
    for key, _, rel in rows:
        data = read_regular_file(root / rel, limit=MAX_LISTED_IMAGE_BYTES, what="image")
        shape.check(data, f"{root / rel} (key {key})")
        sizes.append(len(data))
    keys = np.array([r[0] for r in rows], np.int64)
    labels = np.array([r[1] for r in rows], np.int64)
    if len(np.unique(keys)) != len(keys):
        raise UsageError(f"{lst}: a key appears twice")

    def read_key(i: int) -> bytes:
        data = read_regular_file(root / rows[i][2], limit=MAX_LISTED_IMAGE_BYTES, what="image")
        if len(data) != sizes[i]:
            raise FacetoolError(f"{root / rows[i][2]}: changed while it was imported")
        return data

    meta = aligned_meta((shape.size or (0, 0))[0], lst, "im2rec-list", images=str(root.resolve()))
    fmt = _write(
        output, shape, keys, labels, np.array(sizes, np.int64), lambda i: [read_key(int(k)) for k in i], meta
    )
    return ImportReport(
        output, lst, "list", len(rows), len(np.unique(labels)), fmt.image_size, fmt.jpeg_quality
    )


def pack_pairs_path(output: Path) -> Path:
    """The pairs file an imported pack writes beside its cache: `faces.h5` -> `faces.pairs.csv`."""
    return output.with_suffix(".pairs.csv")


def import_pack(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> ImportReport:
    """Import a verification pack into a face cache plus a pairs file (`path1,path2,same,fold`, the pack's
    10 contiguous folds), so `facetool eval --pairs` scores it on the cache as `--pack` scores the pack."""
    source, output = Path(source), Path(output)
    _check_output(output, [source])
    pairs_file = pack_pairs_path(output)
    check_output_not_input(pairs_file, [source])
    pack = read_pack(source)
    shape = _Shape(None)
    for i, image in enumerate(pack.images):
        shape.check(image, f"{source}: image {i}")
    n = len(pack)
    # image 2i and 2i+1 of pair i: one identity for a matched pair, two for a mismatched one
    labels = np.array([2 * (i // 2) + (0 if pack.issame[i // 2] else i % 2) for i in range(2 * n)], np.int64)
    keys = np.arange(2 * n, dtype=np.int64)
    sizes = np.array([len(b) for b in pack.images], np.int64)
    meta = aligned_meta((shape.size or (0, 0))[0], source, "verification-pack", pairs=n)
    fmt = _write(output, shape, keys, labels, sizes, lambda i: [pack.images[int(k)] for k in i], meta)
    name_of, key_name = _padded(labels), _padded(keys)
    path = [f"{name_of(int(labels[i]))}/{key_name(i)}.jpg" for i in range(2 * n)]
    k = min(10, n)
    folds = np.repeat(np.arange(k), [n // k + (j < n % k) for j in range(k)])  # insightface's KFold(10)
    lines = ["path1,path2,same,fold"] + [
        f"{path[2 * i]},{path[2 * i + 1]},{int(pack.issame[i])},{folds[i] + 1}" for i in range(n)
    ]
    atomic_write_text(pairs_file, "\n".join(lines) + "\n")
    return ImportReport(
        output, source, "pack", 2 * n, len(np.unique(labels)), fmt.image_size, fmt.jpeg_quality, pairs_file
    )


def import_source(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    images: str | os.PathLike[str] | None = None,
) -> ImportReport:
    """Import what `source` is: an im2rec `.lst` (with `images`), a verification pack (`.bin`), or a RecordIO
    set (a `.rec` or a folder holding one)."""
    source = Path(source)
    if images is not None and source.suffix != ".lst":
        raise UsageError(f"{source}: --images goes with an im2rec .lst only")
    if source.suffix == ".lst":
        return import_list(source, images, output)
    if source.suffix == ".bin":
        return import_pack(source, output)
    return import_recordio(source, output)
