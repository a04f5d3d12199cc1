"""`facetool eval --pack` and `--pairs pairs.csv` on real LFW faces, and packs made by `dataset export --pack`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cache_helpers import centre_crop
from cli_helpers import facetool_in_process

from facetool.cache import CacheWriter, FaceRecord
from facetool.evaluation.pairs import read_pairs
from facetool.formats.packs import read_pack, write_pack

IMAGE_SIZE = 80  # the `checkpoint` fixture's input size (tests/evaluation/conftest.py)

SCORES = ("fold_accuracy", "fold_threshold", "accuracy", "val", "fold_val", "auc", "eer")


def pairs_cache(pairs: Path, lfw_dir: Path, cache: Path) -> Path:
    """A cache of the LFW centre crops of every image `pairs` names."""
    with CacheWriter(cache, image_size=IMAGE_SIZE, meta={"data_dir": str(lfw_dir)}) as writer:
        for rel in read_pairs(pairs).images:
            st = (lfw_dir / rel).stat()
            face = centre_crop(lfw_dir / rel, IMAGE_SIZE)
            writer.add(
                FaceRecord(rel, rel.split("/")[0], st.st_size, st.st_mtime_ns, face, None, math.nan, False)
            )
        writer.commit()
    return cache


@pytest.fixture(scope="module")
def ten_folds(shared: Path, lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10-fold subset of pairs.txt (1 matched + 1 mismatched pair per fold) and a cache of its images."""
    folder = tmp_path_factory.mktemp("tenfold")
    pairs = folder / "pairs10.txt"
    lines = (shared / "lfw" / "pairs.txt").read_text().splitlines()
    picked = [lines[1 + 600 * k + half] for k in range(10) for half in (0, 300)]
    pairs.write_text("\n".join(["10\t1", *picked]) + "\n")
    return pairs, pairs_cache(pairs, lfw_dir, folder / "faces.h5")


@pytest.fixture(scope="module")
def view1(shared: Path, lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A View 1 file without folds (20 matched pairs of pairsDevTest.txt, then 20 mismatched) and its cache."""
    folder = tmp_path_factory.mktemp("view1")
    pairs = folder / "devtest40.txt"
    lines = (shared / "lfw" / "pairsDevTest.txt").read_text().splitlines()
    pairs.write_text("\n".join(["20", *lines[1:21], *lines[501:521]]) + "\n")
    return pairs, pairs_cache(pairs, lfw_dir, folder / "faces.h5")


@pytest.mark.parametrize("layout", ["ten_folds", "view1"])
def test_a_pack_made_from_pairs_txt_scores_exactly_as_eval_on_the_cache(
    layout: str, request: pytest.FixtureRequest, checkpoint: Path, tmp_path: Path
) -> None:
    """View 2's pairs.txt and View 1's fold-less files alike: the pack keeps the pairs in fold order, so its 10
    contiguous folds are eval's (for View 1, the stratified blocks; in file order they hold one kind each)."""
    pairs, cache = request.getfixturevalue(layout)
    pack = tmp_path / "lfw.bin"
    result = facetool_in_process("dataset", "export", cache, "--pack", pairs, "-o", pack)
    assert result.returncode == 0, result.stderr
    assert len(read_pack(pack)) == len(read_pairs(pairs))
    on_pack = facetool_in_process(
        "eval", checkpoint, "--pack", pack, "--out", tmp_path / "p", "--device", "cpu"
    )
    assert on_pack.returncode == 0, on_pack.stderr
    assert "lfw.bin" in on_pack.stdout and "± " in on_pack.stdout
    on_cache = facetool_in_process(
        "eval",
        checkpoint,
        "--data",
        cache,
        "--pairs",
        pairs,
        "--flip",
        "--out",
        tmp_path / "c",
        "--device",
        "cpu",
    )
    assert on_cache.returncode == 0, on_cache.stderr
    [pack_report] = json.loads((tmp_path / "p" / "packs.json").read_text())
    cache_report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert pack_report["flip"] is True and pack_report["num_pairs"] == cache_report["num_pairs"]
    for key in SCORES:
        assert pack_report[key] == pytest.approx(cache_report[key], abs=1e-9), key


def test_several_packs_give_one_row_each(shared: Path, checkpoint: Path, tmp_path: Path) -> None:
    """The real insightface pack (numpy arrays) and the same images written as bytes: two rows, equal scores."""
    real = shared / "formats" / "real" / "insightface" / "small_lfw.bin"
    loaded = read_pack(real)
    as_bytes = tmp_path / "as_bytes.bin"
    write_pack(as_bytes, loaded.images, loaded.issame.tolist())
    out = tmp_path / "out"
    result = facetool_in_process(
        "eval", checkpoint, "--pack", real, "--pack", as_bytes, "--out", out, "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if ".bin" in line]) == 2
    first, second = json.loads((out / "packs.json").read_text())
    assert first["num_pairs"] == second["num_pairs"] == 10 and first["folds"] == list(range(1, 11))
    for key in SCORES:
        assert first[key] == second[key], key
    assert first["pairs_file"] == str(real) and second["pairs_file"] == str(as_bytes)


def test_pack_with_data_is_a_usage_error(formats_pack: Path, checkpoint: Path, tmp_path: Path) -> None:
    result = facetool_in_process(
        "eval", checkpoint, "--pack", formats_pack / "devtest50-bytes.bin", "--data", tmp_path
    )
    assert result.returncode == 2 and "--pack scores verification packs on their own" in result.stderr


def test_csv_pairs_score_as_the_lfw_pairs_they_list(
    ten_folds: tuple[Path, Path], checkpoint: Path, tmp_path: Path
) -> None:
    pairs, cache = ten_folds
    parsed = read_pairs(pairs)
    csv = tmp_path / "pairs.csv"
    rows = [
        f"{p.path1},{p.path2},{int(p.issame)},{fold + 1}"
        for p, fold in zip(parsed.pairs, parsed.fold_ids, strict=True)
    ]
    csv.write_text("\n".join(["path1,path2,same,fold", *rows]) + "\n")
    args = ("--data", cache, "--device", "cpu")
    from_csv = facetool_in_process("eval", checkpoint, "--pairs", csv, "--out", tmp_path / "a", *args)
    from_txt = facetool_in_process("eval", checkpoint, "--pairs", pairs, "--out", tmp_path / "b", *args)
    assert from_csv.returncode == 0 and from_txt.returncode == 0, from_csv.stderr + from_txt.stderr
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    for key in SCORES:
        assert a[key] == b[key], key


@pytest.mark.slow
def test_csv_pairs_of_raw_photos_are_detected_and_scored(
    lfw_dir: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """Own photos: `--pairs pairs.csv --data DIR` detects only the listed images, then scores them."""
    people = [d.name for d in sorted(lfw_dir.iterdir()) if len(list(d.glob("*.jpg"))) >= 2][:10]
    rows = [f"{n}/{n}_0001.jpg,{n}/{n}_0002.jpg,1" for n in people]
    rows += [
        f"{a}/{a}_0001.jpg,{b}/{b}_0002.jpg,0" for a, b in zip(people, people[1:] + people[:1], strict=True)
    ]
    csv = tmp_path / "mine.csv"
    csv.write_text("\n".join(["path1,path2,same", *rows]) + "\n")
    out = tmp_path / "out"
    result = facetool_in_process(
        "eval", checkpoint, "--pairs", csv, "--data", lfw_dir, "--out", out, "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["num_pairs"] == 20 and report["num_images"] == 20 and len(report["fold_accuracy"]) == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path1,path2\na/1.jpg,b/2.jpg\n", "CSV header must be"),
        ("path1,path2,same\na/1.jpg,b/2.jpg,maybe\n", ":2: same must be 1, 0"),
        ("path1,path2,same\n../x/1.jpg,b/2.jpg,1\n", "must be a relative `folder/image` path"),
        ("path1,path2,same,fold\na/1.jpg,b/2.jpg,1,0\n", "fold 0 must be at least 1"),
    ],
)
def test_malformed_csv_pairs_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    from facetool.errors import PairsError

    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(PairsError, match=message):
        read_pairs(path)


@pytest.fixture(scope="module")
def formats_pack(shared: Path) -> Path:
    return shared / "formats" / "packs"


def test_an_imported_pack_scores_on_its_cache_as_the_pack_does(
    shared: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """`dataset import lfw.bin` gives a cache and a CSV with the pack's folds: eval --pairs on them equals --pack."""
    pack = shared / "formats" / "real" / "insightface" / "small_lfw.bin"
    imported = facetool_in_process("dataset", "import", pack, "-o", tmp_path / "faces.h5")
    assert imported.returncode == 0, imported.stderr
    on_pack = facetool_in_process(
        "eval", checkpoint, "--pack", pack, "--out", tmp_path / "p", "--device", "cpu"
    )
    args = (
        "--data",
        tmp_path / "faces.h5",
        "--pairs",
        tmp_path / "faces.pairs.csv",
        "--flip",
        "--device",
        "cpu",
    )
    on_cache = facetool_in_process("eval", checkpoint, *args, "--out", tmp_path / "c")
    assert on_pack.returncode == 0 and on_cache.returncode == 0, on_pack.stderr + on_cache.stderr
    [a] = json.loads((tmp_path / "p" / "packs.json").read_text())
    b = json.loads((tmp_path / "c" / "report.json").read_text())
    for key in SCORES:
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
