"""The bulk RecordIO paths (issue 31) against the record-by-record ones, on the reference files and generated
ones: chunk boundaries (a record straddling one, a multi-part record across one, records larger than a chunk),
random-order indexes, the errors of damaged files, and the batched writer."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from cache_helpers import lfw_files, make_items, some_identities, write_cache

from facetool.cache import open_cache
from facetool.cache.codec import encode_face
from facetool.cache.records import CacheFormat
from facetool.config.dataset import CACHE_DEFAULTS
from facetool.errors import FacetoolError
from facetool.formats import recordio
from facetool.formats.exporting import export_recordio
from facetool.formats.importing import import_recordio
from facetool.formats.recordio import (
    ImageRecord,
    RecordIOError,
    RecordReader,
    RecordWriter,
    pack,
    read_index,
    read_index_arrays,
)
from facetool.formats.recset import RecordSet

SETS = ("recbuilder", "face2rec2", "im2rec")
MAGIC = b"\x0a\x23\xd7\xce"
DEFAULT_CHUNK = recordio.CHUNK_BYTES


def _copy_set(formats_dir: Path, tmp_path: Path, name: str = "recbuilder") -> Path:
    out = tmp_path / name
    shutil.copytree(formats_dir / name, out)
    for path in out.iterdir():
        path.chmod(0o644)
    return out


def _offsets(folder: Path) -> dict[int, int]:
    return {
        int(k): int(o)
        for k, o in (line.split("\t") for line in (folder / "train.idx").read_text().splitlines())
    }


def _one_by_one(folder: Path) -> list[tuple[int, int, str]]:
    """(key, class, SHA-256 of the image) of every image, as `RecordSet.images()` reads them record by record."""
    with RecordSet(folder) as records:
        return [(e.key, e.label, hashlib.sha256(r.image).hexdigest()) for e, r in records.images()]


def _in_bulk(folder: Path) -> tuple[list[tuple[int, int, str]], list[int]]:
    """The same from `image_columns` (the bytes read back from where it says they lie), and the file position
    of every chunk it read."""
    seen: list[bytes] = []

    def check(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, keys: np.ndarray) -> None:
        seen.extend(data[s : s + z].tobytes() for s, z in zip(starts.tolist(), sizes.tolist(), strict=True))

    with RecordSet(folder) as records:
        chunks: list[int] = []
        fill = records.reader._fill
        records.reader._fill = lambda buffer, position: chunks.append(position) or fill(buffer, position)
        cols = records.image_columns(check)
        records.reader._fill = fill
        images = []
        for i in range(len(cols)):
            key = int(cols.keys[i])
            if cols.starts[i] >= 0:
                span = records.reader.read_spans(
                    cols.offsets[i : i + 1],
                    cols.lrecords[i : i + 1],
                    cols.starts[i : i + 1],
                    cols.sizes[i : i + 1],
                    cols.keys[i : i + 1],
                )[0].tobytes()
            else:
                span = records.read(key).image
            assert len(span) == cols.sizes[i]
            images.append((key, int(cols.labels[i]), hashlib.sha256(span).hexdigest()))
    assert sorted(hashlib.sha256(b).hexdigest() for b in seen) == sorted(sha for _, _, sha in images)
    return images, chunks


def _faces(path: Path) -> list[tuple[str, str, str]]:
    with open_cache(path) as cache:
        payloads = cache.payloads(np.arange(len(cache)))
        return [
            (p, cache.identities[label], hashlib.sha256(bytes(b)).hexdigest())
            for p, label, b in zip(cache.paths, cache.labels, payloads, strict=True)
        ]


@pytest.mark.parametrize("chunk", [DEFAULT_CHUNK, 1 << 12, 600])
@pytest.mark.parametrize("name", SETS)
def test_bulk_columns_equal_the_record_by_record_read(
    formats_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int
) -> None:
    """600 bytes is less than every record: each is read alone."""
    monkeypatch.setattr(recordio, "CHUNK_BYTES", chunk)
    got, chunks = _in_bulk(formats_dir / name)
    assert got == _one_by_one(formats_dir / name)
    if chunk == DEFAULT_CHUNK:
        assert len(chunks) == 1  # the whole reference set in one sequential read


def test_a_record_straddling_a_chunk_boundary_starts_the_next_chunk(
    formats_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = formats_dir / "recbuilder"
    offsets = _offsets(folder)
    monkeypatch.setattr(recordio, "CHUNK_BYTES", offsets[7] - offsets[1] + 20)  # ends inside record 7
    got, chunks = _in_bulk(folder)
    assert got == _one_by_one(folder)
    assert chunks[:2] == [offsets[1], offsets[7]]


def test_a_multipart_record_across_a_chunk_boundary_is_joined(
    formats_dir: Path, manifest: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = formats_dir / "recbuilder"
    key = manifest["sets"]["recbuilder"]["multipart_image_key"]
    offsets = _offsets(folder)
    monkeypatch.setattr(
        recordio, "CHUNK_BYTES", offsets[key] - offsets[1] + 30
    )  # its first part's header only
    got, _ = _in_bulk(folder)
    assert got == _one_by_one(folder)
    with RecordSet(folder) as records:
        assert MAGIC in records.read(key).image


@pytest.mark.parametrize("chunk", [1 << 12, 600])
def test_an_import_in_small_chunks_stores_the_same_cache(
    formats_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    for name in SETS:
        import_recordio(formats_dir / name, tmp_path / f"{name}.h5")
    monkeypatch.setattr(recordio, "CHUNK_BYTES", chunk)
    for name in SETS:
        import_recordio(formats_dir / name, tmp_path / f"{name}-small.h5")
        assert _faces(tmp_path / f"{name}-small.h5") == _faces(tmp_path / f"{name}.h5"), name


def test_a_random_order_index_reads_the_file_in_order(
    formats_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """im2rec's keys are shuffled; a set written in reverse key order too: both come out as record by record."""
    with RecordSet(formats_dir / "im2rec") as records:
        _, offsets = records.image_key_arrays()
        assert (np.diff(offsets) < 0).any()
    with RecordSet(formats_dir / "recbuilder") as records:
        items = [(e.key, r) for e, r in records.images()]
    folder = tmp_path / "reversed"
    folder.mkdir()
    with (folder / "train.rec").open("wb") as rec, (folder / "train.idx").open("wb") as idx:
        writer = RecordWriter(rec, idx)
        for key, record in reversed(items):
            writer.write(key, pack(record))
    monkeypatch.setattr(recordio, "CHUNK_BYTES", 1 << 13)
    got, chunks = _in_bulk(folder)
    assert got == _one_by_one(folder) == _one_by_one(formats_dir / "recbuilder")
    assert chunks == sorted(chunks)  # sequential, though the keys run backwards through the file
    import_recordio(folder, tmp_path / "reversed.h5")
    import_recordio(formats_dir / "recbuilder", tmp_path / "faces.h5")
    assert _faces(tmp_path / "reversed.h5") == _faces(tmp_path / "faces.h5")


def _flip(folder: Path, position: int, value: int | None = None, xor: int = 0xFF) -> None:
    data = bytearray((folder / "train.rec").read_bytes())
    data[position] = value if value is not None else data[position] ^ xor
    (folder / "train.rec").write_bytes(data)


def _set_label(folder: Path, key: int, label: float, field: int = 4) -> None:
    """Write `label` into the payload of `key` at byte `field` (4: the header's label, 24: a list's first)."""
    data = bytearray((folder / "train.rec").read_bytes())
    at = _offsets(folder)[key] + 8 + field
    data[at : at + 4] = np.float32(label).tobytes()
    (folder / "train.rec").write_bytes(data)


def _truncate_last(folder: Path) -> None:
    last = max(_offsets(folder).values())
    (folder / "train.rec").write_bytes((folder / "train.rec").read_bytes()[: last + 100])


def _last_key(folder: Path) -> int:
    offsets = _offsets(folder)
    return max(offsets, key=offsets.__getitem__)


DAMAGES = {
    "bad magic": ("recbuilder", lambda f: _flip(f, _offsets(f)[30] + 1), r"train\.rec: key 30: bad magic"),
    "part flag": (
        "recbuilder",
        lambda f: _flip(f, _offsets(f)[9] + 7, xor=0x60),
        r"key 9: corrupt record \(part flag 3",
    ),
    "no class": ("recbuilder", lambda f: _set_label(f, 12, 1.5), r"key 12: label 1\.5 is not a class number"),
    "negative": (
        "face2rec2",
        lambda f: _set_label(f, 5, -2.0, 24),
        r"key 5: label \(-2\.0, 1\.0\) is not a class",
    ),
    "truncated": ("im2rec", _truncate_last, r"key \d+: truncated record"),
}


@pytest.mark.parametrize("chunk", [DEFAULT_CHUNK, 5000])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_set_gives_the_record_by_record_error(
    formats_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, chunk: int
) -> None:
    name, damage_it, message = DAMAGES[damage]
    folder = _copy_set(formats_dir, tmp_path, name)
    damage_it(folder)
    with pytest.raises(RecordIOError, match=message) as one_by_one:
        _one_by_one(folder)
    monkeypatch.setattr(recordio, "CHUNK_BYTES", chunk)
    with pytest.raises(RecordIOError) as bulk:
        import_recordio(folder, tmp_path / "faces.h5")
    assert str(bulk.value) == str(one_by_one.value)
    assert "\n" not in str(bulk.value)
    assert not (tmp_path / "faces.h5").exists()


def test_an_image_of_another_size_among_equal_headers_is_refused(
    formats_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images whose header bytes equal a checked one pass by comparison; a 100 px one among them is still seen."""
    with RecordSet(formats_dir / "recbuilder") as records:
        images = [r.image for _, r in records.images()]
    face = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_COLOR)
    small = cv2.imencode(".jpg", cv2.resize(face, (100, 100)), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    folder = tmp_path / "set"
    folder.mkdir()
    with (folder / "train.rec").open("wb") as rec, (folder / "train.idx").open("wb") as idx:
        writer = RecordWriter(rec, idx)
        for key in range(1, 301):
            writer.write(
                key, pack(ImageRecord(0, float(key % 7), key, 0, small if key == 260 else images[key % 50]))
            )
    for chunk in (DEFAULT_CHUNK, 5000):
        monkeypatch.setattr(recordio, "CHUNK_BYTES", chunk)
        with pytest.raises(
            FacetoolError, match=r"train\.rec: key 260: image is 100x100, the others are 112x112"
        ):
            import_recordio(folder, tmp_path / "faces.h5")
        assert not (tmp_path / "faces.h5").exists()


def test_a_record_changed_after_its_headers_were_read_is_refused(formats_dir: Path, tmp_path: Path) -> None:
    folder = _copy_set(formats_dir, tmp_path)
    with RecordSet(folder) as records:
        cols = records.image_columns(lambda *_: None)
    _flip(folder, _offsets(folder)[20] + 4, xor=0x04)  # its length
    with (
        RecordReader(folder / "train.rec") as reader,
        pytest.raises(RecordIOError, match=r"train\.rec: key 20: changed while it was read"),
    ):
        whole = cols.starts >= 0
        reader.read_spans(
            cols.offsets[whole], cols.lrecords[whole], cols.starts[whole], cols.sizes[whole], cols.keys[whole]
        )


@pytest.mark.parametrize("name", [*SETS, "real/adaface"])
def test_the_index_parsed_in_bulk_equals_the_line_by_line_parse(formats_dir: Path, name: str) -> None:
    folder = formats_dir / name
    size = (folder / "train.rec").stat().st_size
    keys, offsets = read_index_arrays(folder / "train.idx", size)
    assert list(zip(keys.tolist(), offsets.tolist(), strict=True)) == read_index(folder / "train.idx", size)


def test_an_index_that_is_not_plain_goes_line_by_line(formats_dir: Path, tmp_path: Path) -> None:
    """CRLF and spaces are read as before; a repeated key is refused with its line number either way."""
    lines = (formats_dir / "im2rec" / "train.idx").read_text().splitlines()
    idx = tmp_path / "train.idx"
    idx.write_bytes(("\r\n".join(line.replace("\t", "  ") for line in lines) + "\r\n").encode())
    size = (formats_dir / "im2rec" / "train.rec").stat().st_size
    keys, offsets = read_index_arrays(idx, size)
    assert list(zip(keys.tolist(), offsets.tolist(), strict=True)) == read_index(
        formats_dir / "im2rec" / "train.idx", size
    )
    idx.write_text("\n".join([*lines, lines[3]]) + "\n")
    with pytest.raises(RecordIOError, match=rf"train\.idx: line {len(lines) + 1}: key \d+ appears twice"):
        read_index_arrays(idx, size)


def test_a_batch_is_written_byte_for_byte_as_record_by_record(formats_dir: Path, tmp_path: Path) -> None:
    """Magic words at aligned and unaligned places, empty and odd-sized bodies, the multi-part reference image."""
    with RecordSet(formats_dir / "recbuilder") as records:
        images = [r.image for _, r in records.images()]
    bodies = [b"", MAGIC, b"ab" + MAGIC + b"cd", MAGIC * 3, b"x" * 7, MAGIC + b"y", b"abcd" + MAGIC, *images]
    keys = np.arange(10, 10 + len(bodies), dtype=np.int64)
    heads = [pack(ImageRecord(0, float(k % 5), int(k), 0, b"")) for k in keys.tolist()]
    one = [tmp_path / "one.rec", tmp_path / "one.idx"]
    batch = [tmp_path / "batch.rec", tmp_path / "batch.idx"]
    with one[0].open("wb") as rec, one[1].open("wb") as idx:
        writer = RecordWriter(rec, idx)
        for key, head, body in zip(keys.tolist(), heads, bodies, strict=True):
            writer.write(key, head + body)
    with batch[0].open("wb") as rec, batch[1].open("wb") as idx:
        writer = RecordWriter(rec, idx)
        writer.write(int(keys[0]), heads[0] + bodies[0])
        rows = np.frombuffer(b"".join(heads[1:]), np.uint8).reshape(len(heads) - 1, -1)
        writer.write_batch(keys[1:], rows, [np.frombuffer(b, np.uint8) for b in bodies[1:]])
    assert one[0].read_bytes() == batch[0].read_bytes()
    assert one[1].read_bytes() == batch[1].read_bytes()


def test_a_raw_cache_exports_as_the_jpeg_it_encodes(lfw_dir: Path, tmp_path: Path) -> None:
    """A raw cache's faces are encoded and written in batches: the set holds those JPEGs, in class order."""
    people = some_identities(lfw_dir, 3, min_images=2)
    write_cache(
        tmp_path / "raw.h5", make_items(lfw_dir, lfw_files(lfw_dir, people), 112), 112, encoding="raw"
    )
    export_recordio(tmp_path / "raw.h5", tmp_path / "train.rec")
    fmt = CacheFormat(112, "jpeg", CACHE_DEFAULTS.jpeg_quality)
    with open_cache(tmp_path / "raw.h5") as cache:
        order = np.argsort(cache.labels, kind="stable")
        expected = [
            (int(cache.labels[i]), encode_face(f, fmt).tobytes())
            for i, f in zip(order, cache.read_faces(order), strict=True)
        ]
    with RecordSet(tmp_path) as records:
        assert [(e.label, r.image) for e, r in records.images()] == expected
