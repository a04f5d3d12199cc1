"""`facetool dataset export`: a face cache into an insightface-style RecordIO set, or pairs into a pack.

The RecordIO set has the header-record layout insightface's RecBuilder writes (arcface_torch's
`MXFaceDataset` reads it): images at keys 1..N (scalar label = class, id = key), one identity record per
class at keys N+1..N+K (empty body, label `[first, end)`), record 0 written last (empty body, label
`[N+1, N+K+1)`, id2 = 1); `property` = `K,S,S`. Classes are the cache's identities in sorted order, images
in the cache's order within each. JPEG bytes are copied as stored; a raw cache's faces are encoded as JPEG.
The `.rec`, `.idx` and `property` are written under temporary names and renamed into place together at the end
(`.rec` last), so an error or Ctrl-C leaves the previous files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache import FaceCache, open_cache
from facetool.cache.codec import encode_face
from facetool.cache.records import CacheFormat
from facetool.config.dataset import CACHE_DEFAULTS
from facetool.errors import FacetoolError, UsageError
from facetool.files import atomic_outputs, check_output_not_input
from facetool.formats.packs import write_pack
from facetool.formats.recordio import ImageRecord, RecordWriter, pack

_BLOCK = 1024
_IMAGE_HEAD = np.dtype([("flag", "<u4"), ("label", "<f4"), ("id", "<u8"), ("id2", "<u8")])  # recordio.HEADER
_IDENTITY_HEAD = np.dtype([*_IMAGE_HEAD.descr, ("first", "<f4"), ("end", "<f4")])  # flag 2: two float labels
PairsList = Sequence[tuple[str, str, bool]]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    output: Path
    images: int
    identities: int
    files: tuple[Path, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "images": self.images,
            "identities": self.identities,
            "files": [str(p) for p in self.files],
        }


def rec_outputs(output: Path) -> tuple[Path, Path, Path]:
    """The `.rec`, `.idx` and `property` an export writes for `-o` (a `.rec` file, or a folder: train.rec)."""
    rec = output / "train.rec" if output.is_dir() or output.suffix != ".rec" else output
    return rec, rec.with_suffix(".idx"), rec.parent / "property"


def _write_records(
    cache: FaceCache, order: np.ndarray, jpeg: CacheFormat | None, writer: RecordWriter
) -> None:
    """Images at keys 1..N in `order`, one identity record per class, record 0 last (module doc)."""
    n, k = len(order), len(cache.identities)
    labels = cache.labels[order]
    for start in range(0, n, _BLOCK):
        rows = order[start : start + _BLOCK]
        if jpeg is None:
            images = cache.payloads(rows)
        else:
            images = [encode_face(face, jpeg) for face in cache.read_faces(rows)]
        keys = np.arange(start + 1, start + len(rows) + 1, dtype=np.int64)
        heads = np.zeros(len(rows), _IMAGE_HEAD)
        heads["label"], heads["id"] = labels[start : start + len(rows)], keys
        writer.write_batch(keys, heads.view(np.uint8).reshape(len(rows), -1), images)
    bounds = np.searchsorted(labels, np.arange(k + 1)) + 1
    keys = np.arange(n + 1, n + k + 1, dtype=np.int64)
    heads = np.zeros(k, _IDENTITY_HEAD)
    heads["flag"], heads["id"], heads["first"], heads["end"] = 2, keys, bounds[:-1], bounds[1:]
    writer.write_batch(keys, heads.view(np.uint8).reshape(k, -1), [np.zeros(0, np.uint8)] * k)
    writer.write(0, pack(ImageRecord(2, (float(n + 1), float(n + k + 1)), 0, 1, b"")))


def export_recordio(cache_path: str | os.PathLike[str], output: str | os.PathLike[str]) -> ExportReport:
    """Write the faces of a cache as a header-record RecordIO set (module doc)."""
    cache_path, output = Path(cache_path), Path(output)
    rec, idx, prop = rec_outputs(output)
    if not rec.parent.is_dir():
        raise UsageError(f"{rec}: folder {rec.parent} does not exist")
    for path in (rec, idx, prop):
        check_output_not_input(path, [cache_path])
    with open_cache(cache_path) as cache:
        n, k, s = len(cache), len(cache.identities), cache.image_size
        if n == 0:
            raise UsageError(f"{cache_path}: holds no faces to export")
        order = np.argsort(cache.labels, kind="stable")
        jpeg = None if cache.encoding == "jpeg" else CacheFormat(s, "jpeg", CACHE_DEFAULTS.jpeg_quality)
        try:
            with atomic_outputs([prop, idx, rec]) as (t_prop, t_idx, t_rec):
                with open(t_rec, "wb") as rec_handle, open(t_idx, "wb") as idx_handle:
                    _write_records(cache, order, jpeg, RecordWriter(rec_handle, idx_handle))
                t_prop.write_text(f"{k},{s},{s}\n", encoding="ascii")
        except OSError as exc:
            raise FacetoolError(f"{rec}: cannot write the RecordIO set ({exc.strerror or exc})") from None
    return ExportReport(rec, n, k, (rec, idx, prop))


def export_pack(
    cache_path: str | os.PathLike[str], pairs: PairsList, output: str | os.PathLike[str]
) -> ExportReport:
    """Write a verification pack of `pairs` ((path1, path2, same) in order) with the cache's stored images:
    pair i is images 2i and 2i+1, as insightface's `build_eval_pack.py` lays it out."""
    cache_path, output = Path(cache_path), Path(output)
    check_output_not_input(output, [cache_path])
    with open_cache(cache_path) as cache:
        row = {path: i for i, path in enumerate(cache.paths)}
        missing = [p for pair in pairs for p in pair[:2] if p not in row]
        if missing:
            raise UsageError(
                f"{cache_path}: {len(missing)} image(s) of the pairs are not in the cache: {missing[0]}"
            )
        wanted = np.array([row[p] for pair in pairs for p in pair[:2]], np.int64)
        if cache.encoding == "jpeg":
            images = [p.tobytes() for p in cache.payloads(wanted)]
        else:
            jpeg = CacheFormat(cache.image_size, "jpeg", CACHE_DEFAULTS.jpeg_quality)
            images = [encode_face(face, jpeg).tobytes() for face in cache.read_faces(wanted)]
    write_pack(output, images, [bool(pair[2]) for pair in pairs])
    return ExportReport(
        output, len(images), len({p.split("/", 1)[0] for pair in pairs for p in pair[:2]}), (output,)
    )
