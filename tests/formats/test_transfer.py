"""`facetool dataset import | export`: the reference RecordIO sets and packs into caches and back, on real files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import some_identities, write_people_cache
from process_helpers import file_size_limit

from facetool.cache import open_cache
from facetool.errors import FacetoolError
from facetool.formats.exporting import export_recordio
from facetool.formats.importing import import_list, import_pack, import_recordio
from facetool.formats.recordio import RecordIOError
from facetool.formats.recset import RecordSet


def _sha(data: bytes | np.ndarray) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def _faces(path: Path) -> list[tuple[str, str, str]]:
    """(path, identity, SHA-256 of the stored bytes) of every face of a cache."""
    with open_cache(path) as cache:
        payloads = cache.payloads(np.arange(len(cache)))
        return [
            (p, cache.identities[label], _sha(b))
            for p, label, b in zip(cache.paths, cache.labels, payloads, strict=True)
        ]


@pytest.mark.parametrize("name", ["recbuilder", "face2rec2", "im2rec"])
def test_import_stores_every_image_as_it_is(
    formats_dir: Path, manifest: dict, tmp_path: Path, name: str
) -> None:
    expected = manifest["sets"][name]
    report = import_recordio(formats_dir / name, tmp_path / "faces.h5")
    images = {r["payload_sha256"]: r for r in expected["records"] if r["payload_sha256"]}
    faces = _faces(tmp_path / "faces.h5")
    assert len(faces) == report.images == expected["images"]
    assert {sha for _, _, sha in faces} == set(images)  # every image byte for byte, none re-encoded
    for path, identity, sha in faces:
        label = images[sha]["label"]
        assert int(identity) == int(label[0] if isinstance(label, list) else label)
        assert path.startswith(identity + "/")
    with open_cache(tmp_path / "faces.h5") as cache:
        assert cache.meta["detector"] == "none" and cache.meta["alignment"]["template"] == "insightface-112"
        assert cache.meta["imported_from"]["format"] == "mxnet-recordio"
        assert (
            cache.image_size == 112 and cache.jpeg_quality == 92
        )  # read from the JPEGs' quantisation tables
        assert cache.read_faces().shape == (expected["images"], 112, 112, 3)


def test_export_of_an_imported_set_is_mxnets_file_byte_for_byte(
    formats_dir: Path, tmp_path: Path, facetool_cli
) -> None:
    result = facetool_cli("dataset", "import", formats_dir / "recbuilder", "-o", tmp_path / "faces.h5")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    out.mkdir()
    result = facetool_cli("dataset", "export", tmp_path / "faces.h5", "-o", out / "train.rec")
    assert result.returncode == 0, result.stderr
    for name in ("train.rec", "train.idx", "property"):
        assert (out / name).read_bytes() == (formats_dir / "recbuilder" / name).read_bytes(), name


def test_export_compares_field_by_field_with_the_face2rec2_reference(
    formats_dir: Path, tmp_path: Path
) -> None:
    import_recordio(formats_dir / "face2rec2", tmp_path / "faces.h5")
    export_recordio(tmp_path / "faces.h5", tmp_path / "train.rec")
    with RecordSet(tmp_path) as mine, RecordSet(formats_dir / "face2rec2") as theirs:
        assert mine.layout == theirs.layout and mine.property == theirs.property
        ours = [(e.key, e.label, r.image) for e, r in mine.images()]
        ref = [(e.key, e.label, r.image) for e, r in theirs.images()]
        assert ours == ref  # the [class, 1.0] labels become scalar classes, everything else is equal
        for key in range(len(ref) + 1, len(ref) + 1 + 5):
            assert mine.read(key) == theirs.read(key)  # identity records
        head, ref_head = mine.read(0), theirs.read(0)
        assert (head.flag, head.label, head.image) == (ref_head.flag, ref_head.label, ref_head.image)


def test_an_lfw_cache_round_trips_byte_for_byte(lfw_dir: Path, tmp_path: Path) -> None:
    people = some_identities(lfw_dir, 4, min_images=3)
    write_people_cache(lfw_dir, tmp_path / "lfw.h5", people, 3, 112)
    export_recordio(tmp_path / "lfw.h5", tmp_path)
    import_recordio(tmp_path, tmp_path / "back.h5")
    before, after = _faces(tmp_path / "lfw.h5"), _faces(tmp_path / "back.h5")
    assert [sha for _, _, sha in before] == [sha for _, _, sha in after]
    names = {identity: i for i, identity in enumerate(people)}
    assert [names[identity] for _, identity, _ in before] == [int(identity) for _, identity, _ in after]


def test_a_damaged_set_leaves_no_cache_and_one_line(formats_dir: Path, tmp_path: Path, facetool_cli) -> None:
    folder = tmp_path / "set"
    shutil.copytree(formats_dir / "recbuilder", folder)
    rec = folder / "train.rec"
    rec.chmod(0o644)
    offset = dict(line.split("\t") for line in (folder / "train.idx").read_text().splitlines())["30"]
    data = bytearray(rec.read_bytes())
    data[int(offset) + 1] ^= 0xFF
    rec.write_bytes(data)
    result = facetool_cli("dataset", "import", folder, "-o", tmp_path / "faces.h5")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "train.rec: key 30: bad magic" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no cache, no temporary, no lock left


def test_an_index_offset_past_the_end_is_refused_before_anything_is_written(
    formats_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "set"
    shutil.copytree(formats_dir / "im2rec", folder)
    idx = folder / "train.idx"
    idx.chmod(0o644)
    lines = idx.read_text().splitlines()
    key = lines[5].split("\t")[0]
    lines[5] = f"{key}\t{10**9}"
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError, match=rf"train\.idx: key {key}: offset 1000000000 lies past the end"):
        import_recordio(folder, tmp_path / "faces.h5")
    assert not (tmp_path / "faces.h5").exists()


def test_the_output_may_not_be_an_input(formats_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(formats_dir / "im2rec", tmp_path / "set")
    with pytest.raises(FacetoolError, match="names an input"):
        import_recordio(tmp_path / "set", tmp_path / "set" / "train.rec")


def test_a_pack_imports_into_a_cache_and_a_pairs_file(
    formats_dir: Path, manifest: dict, tmp_path: Path
) -> None:
    report = import_pack(formats_dir / "packs" / "devtest50-arrays.bin", tmp_path / "faces.h5")
    rows = report.pairs.read_text().splitlines()
    assert rows[0] == "path1,path2,same,fold" and len(rows) == 51
    faces = {path: sha for path, _, sha in _faces(tmp_path / "faces.h5")}
    expected = manifest["packs"]
    for i, row in enumerate(rows[1:]):
        first, second, same, fold = row.split(",")
        assert [faces[first], faces[second]] == expected["image_sha256"][2 * i : 2 * i + 2]
        assert bool(int(same)) == expected["issame"][i]
        assert int(fold) == i // 5 + 1
        assert (first.split("/")[0] == second.split("/")[0]) == expected["issame"][i]


def test_an_im2rec_list_imports_its_image_files_as_they_are(
    formats_dir: Path, lfw_dir: Path, tmp_path: Path
) -> None:
    lst = formats_dir / "im2rec" / "train.lst"
    report = import_list(lst, lfw_dir, tmp_path / "faces.h5")
    rows = [line.split("\t") for line in lst.read_text().splitlines()]
    assert report.images == len(rows) == 55 and report.identities == 12
    expected = {(f"{int(float(label)):02d}", _sha((lfw_dir / rel).read_bytes())) for _, label, rel in rows}
    assert {(identity, sha) for _, identity, sha in _faces(tmp_path / "faces.h5")} == expected
    assert report.image_size == 250  # LFW's own files: stored, not resized


def test_a_list_naming_a_missing_image_is_one_line(formats_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FacetoolError, match=r"man/man_1\.jpg: image not found"):
        import_list(formats_dir / "real" / "adaface" / "train.lst", None, tmp_path / "faces.h5")
    assert not (tmp_path / "faces.h5").exists()


def test_a_full_disk_during_export_keeps_the_previous_set_whole(formats_dir: Path, tmp_path: Path) -> None:
    """A real EFBIG halfway through the .rec: the earlier export's three files stay as they were, no temporary."""
    import_recordio(formats_dir / "recbuilder", tmp_path / "big.h5")
    import_recordio(formats_dir / "face2rec2", tmp_path / "small.h5")
    out = tmp_path / "out"
    out.mkdir()
    export_recordio(tmp_path / "small.h5", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with (
        file_size_limit(100_000),
        pytest.raises(FacetoolError, match=r"train\.rec: cannot write the RecordIO set"),
    ):
        export_recordio(tmp_path / "big.h5", out)  # the big set's .rec is 224 KB
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
