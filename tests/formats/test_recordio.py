"""The RecordIO reader and writer against the files MXNet 1.9.1 wrote, and against damaged copies of them."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from facetool.formats.recordio import ImageRecord, RecordIOError, RecordReader, RecordWriter, pack
from facetool.formats.recset import FLAT_LAYOUT, HEADER_LAYOUT, RecordSet

SETS = ("recbuilder", "face2rec2", "im2rec")


def _as_manifest(key: int, record: ImageRecord) -> dict[str, Any]:
    return {
        "key": key,
        "flag": record.flag,
        "label": list(record.label) if isinstance(record.label, tuple) else record.label,
        "id": record.id,
        "id2": record.id2,
        "payload_bytes": len(record.image),
        "payload_sha256": hashlib.sha256(record.image).hexdigest() if record.image else None,
    }


@pytest.mark.parametrize("name", SETS)
def test_every_reference_record_reads_as_mxnet_reads_it(formats_dir: Path, manifest: dict, name: str) -> None:
    expected = manifest["sets"][name]
    with RecordSet(formats_dir / name) as records:
        got = [_as_manifest(r["key"], records.read(r["key"])) for r in expected["records"]]
        assert got == expected["records"]
        assert sorted(key for key, _ in records.index) == sorted(r["key"] for r in expected["records"])
        assert len(records.image_keys()) == expected["images"]
        assert len({entry.label for entry, _ in records.images()}) == expected["classes"]
        assert records.layout == (FLAT_LAYOUT if name == "im2rec" else HEADER_LAYOUT)


def test_the_multipart_record_is_joined_with_its_magic_word(formats_dir: Path, manifest: dict) -> None:
    key = manifest["sets"]["recbuilder"]["multipart_image_key"]
    with RecordSet(formats_dir / "recbuilder") as records:
        image = records.read(key).image
    assert b"\x0a\x23\xd7\xce" in image  # the magic word (little-endian) that split the record, put back


@pytest.mark.parametrize("name", SETS)
def test_a_rec_without_idx_reads_by_header_ids(formats_dir: Path, tmp_path: Path, name: str) -> None:
    shutil.copy(formats_dir / name / "train.rec", tmp_path / "train.rec")
    with RecordSet(tmp_path) as scanned, RecordSet(formats_dir / name) as indexed:
        assert sorted(scanned.index) == sorted(indexed.index)
        assert scanned.layout == indexed.layout
        assert [(e, r) for e, r in scanned.images()] == [(e, r) for e, r in indexed.images()]


def test_the_real_adaface_file_reads(formats_dir: Path) -> None:
    with RecordSet(formats_dir / "real" / "adaface" / "train.rec") as records:
        entries = [entry for entry, _ in records.images()]
        assert records.layout == FLAT_LAYOUT
        assert [e.label for e in entries] == [0, 0, 0, 0, 1, 1, 1, 1]
        assert all(record.image[:2] == b"\xff\xd8" for _, record in records.images())


def _copy_set(formats_dir: Path, tmp_path: Path, name: str = "recbuilder") -> Path:
    out = tmp_path / name
    shutil.copytree(formats_dir / name, out)
    for path in out.iterdir():
        path.chmod(0o644)
    return out


def _offset(folder: Path, key: int) -> int:
    for line in (folder / "train.idx").read_text().splitlines():
        k, offset = line.split("\t")
        if int(k) == key:
            return int(offset)
    raise AssertionError(key)


def _read_all(folder: Path) -> None:
    with RecordSet(folder) as records:
        for _ in records.images():
            pass


def test_bad_magic_names_the_file_and_key(formats_dir: Path, tmp_path: Path) -> None:
    folder = _copy_set(formats_dir, tmp_path)
    data = bytearray((folder / "train.rec").read_bytes())
    data[_offset(folder, 7)] ^= 0xFF
    (folder / "train.rec").write_bytes(data)
    with pytest.raises(RecordIOError, match=r"train\.rec: key 7: bad magic") as info:
        _read_all(folder)
    assert "\n" not in str(info.value)


def test_truncated_file_names_the_key(formats_dir: Path, tmp_path: Path) -> None:
    folder = _copy_set(formats_dir, tmp_path, "im2rec")
    rec = folder / "train.rec"
    last_key, last = max(
        ((int(k), int(o)) for k, o in (ln.split() for ln in (folder / "train.idx").open())),
        key=lambda item: item[1],
    )
    rec.write_bytes(rec.read_bytes()[: last + 100])
    with pytest.raises(RecordIOError, match=rf"train\.rec: key {last_key}: truncated record"):
        _read_all(folder)


def test_index_offset_past_the_end_names_the_key(formats_dir: Path, tmp_path: Path) -> None:
    folder = _copy_set(formats_dir, tmp_path)
    idx = folder / "train.idx"
    idx.write_text(idx.read_text().replace("\n3\t7696\n", "\n3\t99999999\n"))
    with pytest.raises(RecordIOError, match=r"train\.idx: key 3: offset 99999999 lies past the end"):
        _read_all(folder)


def test_corrupt_part_flags_are_refused(formats_dir: Path, tmp_path: Path) -> None:
    folder = _copy_set(formats_dir, tmp_path)
    data = bytearray((folder / "train.rec").read_bytes())
    data[_offset(folder, 9) + 7] |= 0x60  # cflag 3 where a record starts
    (folder / "train.rec").write_bytes(data)
    with pytest.raises(RecordIOError, match=r"key 9: corrupt record \(part flag 3"):
        _read_all(folder)


def test_writer_splits_at_aligned_magic_words_like_mxnet(formats_dir: Path) -> None:
    """Record 4 of the reference set is multi-part: written again, its parts are byte for byte MXNet's."""
    with RecordSet(formats_dir / "recbuilder") as records:
        offsets = dict(records.index)
        record = records.read(4)
        payload = records.reader.read_at(offsets[4], 4)
    start, end = offsets[4], offsets[5]
    rec, idx = io.BytesIO(), io.BytesIO()
    RecordWriter(rec, idx).write(4, pack(record))
    assert rec.getvalue() == (formats_dir / "recbuilder" / "train.rec").read_bytes()[start:end]
    assert idx.getvalue() == b"4\t0\n"
    assert len(payload) == 24 + len(record.image)


def test_round_trip_of_edge_cases(tmp_path: Path) -> None:
    magic = b"\x0a\x23\xd7\xce"
    images = [b"", magic, b"ab" + magic + b"cd", magic * 3, b"x" * 7, magic + b"y"]
    rec, idx = tmp_path / "t.rec", tmp_path / "t.idx"
    with rec.open("wb") as r, idx.open("wb") as i:
        writer = RecordWriter(r, i)
        for key, image in enumerate(images):
            writer.write(key, pack(ImageRecord(0, float(key), key, 0, image)))
    with RecordReader(rec) as reader:
        got = [
            reader.read_record(offset, key).image
            for key, offset in (map(int, ln.split()) for ln in idx.open())
        ]
    assert got == images
