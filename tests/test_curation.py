"""`facetool dataset stats | filter | merge` on real LFW crops and the real LFW directory, as subprocesses."""

from __future__ import annotations

import io
import json
import pickle
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import lfw_files, make_items, write_cache
from rich.console import Console

from facetool.cache import CacheWriter, FaceRecord, Failure, open_cache
from facetool.cache.copy import Selection
from facetool.cache.records import FaceColumns, FailureColumns
from facetool.cache.store import write_file
from facetool.cli.dataset import render_stats
from facetool.config.dataset import FilterSettings
from facetool.curation import dataset_stats, filter_cache, merge_caches, pairs_identities
from facetool.errors import CacheError, UsageError

SIZE = 48


def names_in_pairs_file(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines()[1:]:
        fields = line.split("\t")
        names.add(fields[0])
        if len(fields) == 4:
            names.add(fields[2])
    return names


@pytest.fixture(scope="module")
def dev_test(shared: Path) -> Path:
    return shared / "lfw" / "pairsDevTest.txt"


@pytest.fixture(scope="module")
def chosen(lfw_dir: Path, dev_test: Path) -> list[str]:
    """40 identities with at most 6 images: 15 named in pairsDevTest.txt, 25 not (singletons included)."""
    in_pairs = names_in_pairs_file(dev_test)
    inside, outside = [], []
    for d in sorted(lfw_dir.iterdir())[::7]:
        n = len(list(d.glob("*.jpg")))
        if d.name in in_pairs and 2 <= n <= 6 and len(inside) < 15:
            inside.append(d.name)
        elif d.name not in in_pairs and n <= 6 and len(outside) < 25:
            outside.append(d.name)
    assert len(inside) == 15 and len(outside) == 25
    return sorted(inside + outside)


@pytest.fixture(scope="module")
def items(lfw_dir: Path, chosen: list[str]) -> list[FaceRecord | Failure]:
    return make_items(lfw_dir, lfw_files(lfw_dir, chosen), SIZE, fail_every=11)


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory, items) -> Path:
    path = tmp_path_factory.mktemp("dataset") / "faces.h5"
    write_cache(path, items, SIZE, meta={"detector": "centre crop"})
    return path


def face_counts(items) -> Counter[str]:
    return Counter(i.identity for i in items if isinstance(i, FaceRecord))


def test_stats_of_a_cache_match_an_independent_count(cache_path: Path, items, facetool_cli) -> None:
    counts = face_counts(items)
    faces = [i for i in items if isinstance(i, FaceRecord)]
    failures = [i for i in items if isinstance(i, Failure)]
    result = facetool_cli("dataset", "stats", cache_path, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["kind"] == "cache"
    assert stats["identities"] == len(counts)
    assert stats["images"] == len(faces)
    assert stats["images_per_identity_min"] == min(counts.values())
    assert stats["images_per_identity_median"] == statistics.median(counts.values())
    assert stats["images_per_identity_max"] == max(counts.values())
    assert stats["identities_with_2_plus"] == sum(1 for c in counts.values() if c >= 2)
    assert stats["detected"] == sum(r.detected for r in faces)
    assert stats["fallbacks"] == sum(not r.detected for r in faces)
    assert stats["failures"] == len(failures)
    assert stats["detection_rate"] == pytest.approx(stats["detected"] / len(items))
    console = Console(file=io.StringIO(), width=120)
    render_stats(dataset_stats(cache_path), console)
    table = console.file.getvalue()
    assert re.search(rf"identities with 2\+ images\s+│\s+{stats['identities_with_2_plus']}\s", table), table


def test_stats_of_the_lfw_directory(lfw_dir: Path, facetool_cli) -> None:
    result = facetool_cli("dataset", "stats", lfw_dir, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["identities"], stats["images"], stats["identities_with_2_plus"]) == (5749, 13233, 1680)
    assert (stats["images_per_identity_min"], stats["images_per_identity_max"]) == (1, 530)
    assert stats["detected"] is None and stats["failures"] == 0


def test_filter_exclude_pairs_keeps_exactly_the_others(
    tmp_path: Path, cache_path: Path, items, dev_test: Path, facetool_cli
) -> None:
    out = tmp_path / "train.h5"
    result = facetool_cli("dataset", "filter", cache_path, "-o", out, "--exclude-pairs", dev_test)
    assert result.returncode == 0, result.stderr
    assert "pairsDevTest.txt" in result.stdout
    counts = face_counts(items)
    named = names_in_pairs_file(dev_test)
    expected = {n for n, c in counts.items() if n not in named and c >= 2}
    assert named & set(counts) and expected
    with open_cache(out) as kept, open_cache(cache_path) as source:
        assert set(kept.identities) == expected
        assert kept.paths == [
            p for p in source.paths if source.identities[source.labels[source.paths.index(p)]] in expected
        ]
        picked = [source.paths.index(p) for p in kept.paths]
        np.testing.assert_array_equal(
            kept.read_faces(), source.read_faces(picked)
        )  # bytes copied, not re-encoded
        np.testing.assert_array_equal(kept.boxes, source.boxes[picked])
        assert kept.failures == [f for f in source.failures if f.identity in expected]
        assert kept.meta["detector"] == "centre crop" and kept.meta["filtered_from"] == str(cache_path)


def fold_people(pairs_txt: Path) -> list[set[str]]:
    """The people of each of pairs.txt's folds, read straight from its lines (header: folds, pairs per fold)."""
    lines = pairs_txt.read_text().splitlines()
    n_folds, per_fold = map(int, lines[0].split())
    folds = []
    for k in range(n_folds):
        block = lines[1 + 2 * per_fold * k : 1 + 2 * per_fold * (k + 1)]
        fields = [line.split("\t") for line in block]
        folds.append({f[0] for f in fields} | {f[2] for f in fields if len(f) == 4})
    return folds


def test_filter_one_fold_of_view2_keeps_the_other_folds_people(
    tmp_path: Path, shared: Path, lfw_dir: Path, facetool_cli
) -> None:
    pairs_txt = shared / "lfw" / "pairs.txt"
    folds = fold_people(pairs_txt)
    small = [n for n in sorted(set().union(*folds)) if 2 <= len(list((lfw_dir / n).glob("*.jpg"))) <= 3]
    in_fold = [n for n in small if n in folds[2]][:6]
    outside = [n for n in small if n not in folds[2]][:6]
    cache = tmp_path / "faces.h5"
    write_cache(cache, make_items(lfw_dir, lfw_files(lfw_dir, in_fold + outside), SIZE), SIZE)
    out = tmp_path / "fold3-out.h5"
    result = facetool_cli(
        "dataset", "filter", cache, "-o", out, "--exclude-pairs", pairs_txt, "--fold", "3", "--json"
    )
    assert result.returncode == 0, result.stderr
    with open_cache(out) as kept:
        assert set(kept.identities) == set(outside)
    assert json.loads(result.stdout)["dropped_identities"] == {"named in pairs.txt fold 3": len(in_fold)}
    everyone = filter_cache(cache, tmp_path / "all-out.h5", FilterSettings(exclude_pairs=[pairs_txt]))
    assert everyone.kept_identities == 0

    for args, message in [
        (
            ["--exclude-pairs", pairs_txt, "--fold", "11"],
            f"{pairs_txt}: fold 11 asked for, but the file has folds 1 to 10",
        ),
        (["--exclude-pairs", shared / "lfw" / "pairsDevTest.txt", "--fold", "1"], "has no folds"),
        (["--fold", "2"], "--fold 2 needs --exclude-pairs"),
    ]:
        result = facetool_cli("dataset", "filter", cache, "-o", tmp_path / "x.h5", *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, (
            result.stderr
        )
    assert not (tmp_path / "x.h5").exists()


def test_filter_keeps_pairs_images_and_reencodes(
    tmp_path: Path, cache_path: Path, dev_test: Path, facetool_cli
) -> None:
    with open_cache(cache_path) as source:
        named = names_in_pairs_file(dev_test)
        test_faces = [p for p in source.paths if p.split("/")[0] in named]
    a, b, c = test_faces[0], test_faces[1], test_faces[-1]

    def person_and_number(path: str) -> tuple[str, int]:
        return path.split("/")[0], int(path[-8:-4])

    (pa, na), (pb, nb), (pc, nc) = map(person_and_number, (a, b, c))
    assert pa == pb != pc, "the first two DevTest faces belong to one person, the last to another"
    lines = [f"{pa}\t{na}\t{nb}", f"{pa}\t{na}\t{pc}\t{nc}"]
    pairs = tmp_path / "mine.txt"
    pairs.write_text("1\n" + "\n".join(lines) + "\n")
    out = tmp_path / "bundle.h5"
    result = facetool_cli(
        "dataset",
        "filter",
        cache_path,
        "-o",
        out,
        "--exclude-pairs",
        dev_test,
        "--keep-pairs",
        pairs,
        "--jpeg-quality",
        "80",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    plain = tmp_path / "plain.h5"
    filter_cache(cache_path, plain, FilterSettings(exclude_pairs=[dev_test]))
    with open_cache(out) as kept, open_cache(plain) as others, open_cache(cache_path) as source:
        assert sorted(kept.paths) == sorted([*others.paths, a, b, c])
        assert report["kept_for_pairs"] == 3 and report["kept_images"] == len(others) + 3
        picked = [source.paths.index(p) for p in kept.paths]
        error = np.abs(kept.read_faces().astype(int) - source.read_faces(picked).astype(int)).mean()
        assert 0 < error < 6, error
        assert kept.meta["filter"]["jpeg_quality"] == 80 and kept.meta["filtered_from"] == str(cache_path)
    assert out.stat().st_size < plain.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir() if "bundle" in p.name) == ["bundle.h5"]


def test_filter_lists_and_max_images(tmp_path: Path, cache_path: Path, items, chosen: list[str]) -> None:
    counts = face_counts(items)
    big = sorted(n for n, c in counts.items() if c >= 3)
    include = tmp_path / "include.txt"
    include.write_text("# people to keep\n" + "\n".join(big) + "\n\n" + chosen[0] + "  # a comment\n")
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(big[0] + "\n")
    out = tmp_path / "some.h5"
    settings = FilterSettings(min_images=1, max_images=2, include=[include], exclude=[exclude])
    report = filter_cache(cache_path, out, settings)
    expected = (set(big) | {chosen[0]}) & set(counts) - {big[0]}
    with open_cache(out) as kept, open_cache(cache_path) as source:
        assert set(kept.identities) == expected
        for name in expected:
            first_two = [p for p in source.paths if p.split("/")[0] == name][:2]
            assert [p for p in kept.paths if p.split("/")[0] == name] == first_two
    assert report.kept_identities == len(expected)
    assert report.dropped_identities["in an --exclude list"] == 1


def test_filter_refuses_bad_input(tmp_path: Path, cache_path: Path, facetool_cli) -> None:
    bad_pairs = tmp_path / "pairs.txt"
    bad_pairs.write_text("2\nAlice\t1\t2\nBob\t1\nCarol\t1\tDan\t2\nEve\t1\tFay\t1\n")
    result = facetool_cli(
        "dataset", "filter", cache_path, "-o", tmp_path / "o.h5", "--exclude-pairs", bad_pairs
    )
    assert result.returncode == 1
    assert re.fullmatch(rf"error: {re.escape(str(bad_pairs))}:3: .*\n", result.stderr), result.stderr
    with pytest.raises(UsageError, match="refusing to overwrite"):
        filter_cache(cache_path, cache_path, FilterSettings())
    with pytest.raises(UsageError, match="max-images"):
        filter_cache(cache_path, tmp_path / "x.h5", FilterSettings(min_images=3, max_images=2))
    with pytest.raises(UsageError, match=re.escape(str(tmp_path / "nope"))):
        filter_cache(cache_path, tmp_path / "y.h5", FilterSettings(include=[tmp_path / "nope"]))
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def test_merge_of_two_halves_equals_the_whole(tmp_path: Path, cache_path: Path, items, facetool_cli) -> None:
    half_a, half_b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_cache(half_b, items[1::2], SIZE, meta={"detector": "centre crop"})
    write_cache(half_a, items[0::2] + items[1:6:2], SIZE, meta={"detector": "centre crop"})  # 3 duplicates
    out = tmp_path / "merged.h5"
    result = facetool_cli("dataset", "merge", half_a, half_b, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["duplicates"] == 3
    with open_cache(out) as merged, open_cache(cache_path) as whole:
        assert merged.paths == whole.paths and merged.identities == whole.identities
        np.testing.assert_array_equal(merged.labels, whole.labels)
        np.testing.assert_array_equal(merged.scores, whole.scores)
        assert merged.failures == whole.failures
        np.testing.assert_array_equal(merged.read_faces(), whole.read_faces())
    assert dataset_stats(out).to_dict() | {"source": ""} == dataset_stats(cache_path).to_dict() | {
        "source": ""
    }


def test_merge_refuses_other_formats(tmp_path: Path, cache_path: Path, items) -> None:
    raw = tmp_path / "raw.h5"
    write_cache(raw, items[:4], SIZE, encoding="raw")
    with pytest.raises(CacheError, match=rf"{re.escape(str(raw))}.*encoding 'raw' vs 'jpeg'"):
        merge_caches([cache_path, raw], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()
    with pytest.raises(UsageError, match="refusing"):
        merge_caches([cache_path, raw], raw)


@pytest.mark.parametrize("name", ["pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"])
def test_pairs_identities_of_every_lfw_pairs_format(shared: Path, name: str) -> None:
    path = shared / "lfw" / name
    assert pairs_identities(path) == names_in_pairs_file(path)


FILTER_VARIANTS = {"copy": (), "reencode": ("--jpeg-quality", "80")}


def _leftover_journal(path: Path, items) -> None:
    """A cache at `path` whose writer was killed after a commit: its last segment is still in the journal."""
    code = (
        "import os, pickle, sys\n"
        "from facetool.cache import CacheWriter\n"
        "items = pickle.load(open(sys.argv[2], 'rb'))\n"
        f"w = CacheWriter(sys.argv[1], image_size={SIZE})\n"
        "for item in items: w.add(item)\n"
        "w.commit()\n"
        "os._exit(0)\n"
    )
    blob = path.with_name("items.pickle")
    blob.write_bytes(pickle.dumps(items))
    subprocess.run([sys.executable, "-c", code, str(path), str(blob)], check=True)


@pytest.mark.parametrize("variant", sorted(FILTER_VARIANTS))
def test_filter_ignores_a_leftover_journal_of_the_output(
    variant: str, tmp_path: Path, cache_path: Path, items, facetool_cli
) -> None:
    out = tmp_path / "out.h5"
    stranger = [
        FaceRecord(f"Stranger/Stranger_{k:04d}.jpg", "Stranger", 1, 1, i.face, None, float("nan"), False)
        for k, i in enumerate(x for x in items if isinstance(x, FaceRecord))
    ][:3]
    _leftover_journal(out, stranger)
    assert any(Path(f"{out}.journal").iterdir())
    result = facetool_cli(
        "dataset", "filter", cache_path, "-o", out, "--min-images", "1", *FILTER_VARIANTS[variant]
    )
    assert result.returncode == 0, result.stderr
    with open_cache(out) as kept, open_cache(cache_path) as source:
        assert kept.paths == source.paths
        assert "Stranger" not in kept.identities
    assert not Path(f"{out}.journal").exists()


@pytest.mark.parametrize("variant", sorted(FILTER_VARIANTS))
def test_filter_refuses_an_output_a_writer_holds(
    variant: str, tmp_path: Path, cache_path: Path, items, facetool_cli
) -> None:

    out = tmp_path / "busy.h5"
    write_cache(out, [i for i in items if isinstance(i, FaceRecord)][:2], SIZE)
    before = out.read_bytes()
    with CacheWriter(out, image_size=SIZE):
        result = facetool_cli("dataset", "filter", cache_path, "-o", out, *FILTER_VARIANTS[variant])
        assert result.returncode == 1
        assert re.fullmatch(rf"error: {re.escape(str(out))}: another process is writing.*\n", result.stderr)
        assert out.read_bytes() == before


@pytest.mark.parametrize("variant", sorted(FILTER_VARIANTS))
def test_filter_output_that_is_a_folder_or_the_input(
    variant: str, tmp_path: Path, cache_path: Path, facetool_cli
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    result = facetool_cli("dataset", "filter", cache_path, "-o", folder, *FILTER_VARIANTS[variant])
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(folder))}: is a folder.*\n", result.stderr), result.stderr
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    alias = tmp_path / "alias.h5"
    alias.symlink_to(cache_path)
    before = cache_path.read_bytes()
    result = facetool_cli("dataset", "filter", alias, "-o", cache_path, *FILTER_VARIANTS[variant])
    assert result.returncode == 2 and "refusing to overwrite an input cache" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert cache_path.read_bytes() == before


def test_ctrl_c_during_filter_leaves_the_previous_output(tmp_path: Path, cache_path: Path, items) -> None:
    """SIGINT while `filter` writes: no temporary file stays, the output it was replacing is untouched."""
    big = tmp_path / "big.h5"
    with open_cache(cache_path) as src:
        n = 60_000
        rows = np.arange(n)
        names = [f"p{k:05d}" for k in range(n // 20)]
        faces = FaceColumns(
            names,
            rows // 20,
            np.ones(n, np.int64),
            np.ones(n, np.int64),
            np.full((n, 4), np.nan, np.float32),
            np.full(n, np.nan, np.float32),
            np.zeros(n, bool),
            paths=[f"p{r // 20:05d}/{r:06d}.jpg" for r in rows],
        )
        selection = Selection([src], np.zeros(n, np.int64), rows % len(src))
        write_file(big, src.format, {}, 0, faces, FailureColumns(), selection)
    out = tmp_path / "out.h5"
    write_cache(out, [i for i in items if isinstance(i, FaceRecord)][:3], SIZE)
    before = out.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "facetool", "dataset", "filter", big, "-o", out, "--min-images", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.h5.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the filter finished before the signal: make the input bigger"
    assert "Traceback" not in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))) == ["out.h5"]
