"""The HDF5 face cache on real LFW crops: round trips, resume, append, damaged files, locking, SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from cache_helpers import lfw_files, make_items, some_identities, write_cache

from facetool.cache import CacheWriter, FaceRecord, Failure, journal_dir, open_cache
from facetool.errors import CacheError

SIZE = 64


@pytest.fixture(scope="module")
def items(lfw_dir: Path) -> list[FaceRecord | Failure]:
    names = some_identities(lfw_dir, 12, start=40)
    return make_items(lfw_dir, lfw_files(lfw_dir, names), SIZE, fail_every=7)


def faces_of(items):
    return {i.path: i for i in items if isinstance(i, FaceRecord)}


def assert_same_content(a, b) -> None:
    assert a.paths == b.paths
    assert a.identities == b.identities
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.detected, b.detected)
    assert a.failures == b.failures
    np.testing.assert_array_equal(a.read_faces(), b.read_faces())


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_round_trip(tmp_path: Path, items, encoding: str) -> None:
    path = tmp_path / "faces.h5"
    write_cache(path, items, SIZE, encoding=encoding, meta={"detector": "centre-crop", "threshold": 0.5})
    faces = faces_of(items)
    failures = sorted((i for i in items if isinstance(i, Failure)), key=lambda f: f.path)
    with open_cache(path) as cache:
        assert (cache.image_size, cache.encoding) == (SIZE, encoding)
        assert cache.meta == {"detector": "centre-crop", "threshold": 0.5}
        assert len(cache) == len(faces) and cache.paths == sorted(faces)
        assert cache.identities == sorted({r.identity for r in faces.values()})
        assert cache.failures == failures
        assert cache.labels.dtype == np.int64
        loaded = cache.read_faces()
        assert loaded.shape == (len(faces), SIZE, SIZE, 3) and loaded.dtype == np.uint8
        for i, p in enumerate(cache.paths):
            rec = faces[p]
            assert cache.identities[cache.labels[i]] == rec.identity
            assert bool(cache.detected[i]) == rec.detected
            if rec.box is None:
                assert np.isnan(cache.boxes[i]).all() and np.isnan(cache.scores[i])
            else:
                np.testing.assert_allclose(cache.boxes[i], rec.box, rtol=1e-6)
                assert cache.scores[i] == pytest.approx(rec.score, rel=1e-6)
            error = np.abs(loaded[i].astype(int) - rec.face).mean()
            assert error == 0 if encoding == "raw" else error < 4
        picked = [7, 0, len(cache) - 1, 7]
        np.testing.assert_array_equal(cache.read_faces(picked), loaded[picked])
        again = cache.record(3)
        assert again.path == cache.paths[3] and again.identity == faces[again.path].identity


def test_resume_keys_reopen_and_append(tmp_path: Path, items) -> None:
    path = tmp_path / "faces.h5"
    first, rest = items[: len(items) // 2], items[len(items) // 2 :]
    write_cache(path, first, SIZE)
    with CacheWriter(path, image_size=SIZE) as writer:
        assert writer.known_keys() == {(i.path, i.size, i.mtime_ns) for i in first}
        todo = [i for i in items if (i.path, i.size, i.mtime_ns) not in writer.known_keys()]
        assert todo == rest
        for item in todo:
            writer.add(item)
        writer.commit()
    whole = tmp_path / "whole.h5"
    write_cache(whole, items[::-1], SIZE, batch=5)
    with open_cache(path) as appended, open_cache(whole) as reference:
        assert_same_content(appended, reference)
    with CacheWriter(path, image_size=SIZE) as writer:
        assert writer.known_keys() == {(i.path, i.size, i.mtime_ns) for i in items}


def test_changed_file_replaces_its_record(tmp_path: Path, items) -> None:
    path = tmp_path / "faces.h5"
    write_cache(path, items, SIZE)
    old = next(i for i in items if isinstance(i, FaceRecord))
    changed = Failure(old.path, old.identity, old.size + 1, old.mtime_ns + 5, "unreadable now")
    with CacheWriter(path, image_size=SIZE) as writer:
        writer.add(changed)
    with open_cache(path) as cache:
        assert old.path not in cache.paths
        assert changed in cache.failures
        assert (old.path, old.size, old.mtime_ns) not in cache.resume_keys()


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"image_size": 32}, "image_size"),
        ({"encoding": "raw"}, "encoding"),
        ({"jpeg_quality": 80}, "jpeg_quality"),
    ],
)
def test_append_with_other_format_is_refused(tmp_path: Path, items, kwargs, word) -> None:
    path = tmp_path / "faces.h5"
    write_cache(path, items[:3], SIZE)
    with pytest.raises(CacheError, match=f"{re.escape(str(path))}.*{word}"):
        CacheWriter(path, **{"image_size": SIZE, **kwargs})
    with CacheWriter(path, image_size=SIZE) as writer:  # the refused writer left the lock free
        writer.add(items[3])


def test_unusable_files_raise_cache_error_naming_the_file(tmp_path: Path, items) -> None:
    good = tmp_path / "good.h5"
    write_cache(good, items, SIZE, encoding="raw")
    data = good.read_bytes()

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    random_bytes = tmp_path / "random.h5"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    other_version = tmp_path / "v99.h5"
    other_version.write_bytes(data)
    with h5py.File(other_version, "r+") as h5:
        h5.attrs["format_version"] = 99
    not_cache = tmp_path / "plain.h5"
    with h5py.File(not_cache, "w") as h5:
        h5["x"] = np.arange(3)

    cases = {truncated: "truncated", random_bytes: "not an HDF5", empty: "", other_version: "version 99"}
    cases |= {
        not_cache: "not a facetool face cache",
        tmp_path / "missing.h5": "no such",
        tmp_path: "directory",
    }
    for path, words in cases.items():
        with pytest.raises(CacheError, match=re.escape(str(path))) as info, open_cache(path) as cache:
            cache.read_faces()
        assert words in str(info.value)
        if path.exists():  # a writer never replaces a file that is not a usable cache
            with pytest.raises(CacheError, match=re.escape(str(path))):
                CacheWriter(path, image_size=SIZE, encoding="raw")
    assert truncated.read_bytes() == data[: len(data) // 2]


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_damaged_bytes_never_escape_as_library_errors(tmp_path: Path, items, encoding: str) -> None:
    good = tmp_path / "good.h5"
    write_cache(good, items[:12], SIZE, encoding=encoding)
    data = good.read_bytes()
    rng = random.Random(7)
    damaged = tmp_path / "damaged.h5"
    outcomes = []
    for _ in range(80):
        mutated = bytearray(data)
        if rng.random() < 0.3:
            mutated = mutated[: rng.randrange(len(mutated))]
        else:
            for _ in range(rng.randint(1, 10)):
                mutated[rng.randrange(min(len(mutated), 8192))] = rng.randrange(256)
        damaged.write_bytes(bytes(mutated))
        try:
            with open_cache(damaged) as cache:
                cache.read_faces()
                outcomes.append("read")
        except CacheError as exc:
            assert str(damaged) in str(exc)
            outcomes.append("refused")
    assert outcomes.count("refused") > 40


def test_corrupted_image_bytes_raise_cache_error(tmp_path: Path, items) -> None:
    path = tmp_path / "faces.h5"
    write_cache(path, items, SIZE)
    with h5py.File(path, "r+") as h5:
        blob = h5["faces/jpeg"]
        blob[: blob.shape[0]] = np.full(blob.shape[0], 7, np.uint8)
    with open_cache(path) as cache, pytest.raises(CacheError, match=f"{re.escape(str(path))}.*corrupted"):
        cache.read_faces()


def test_reader_sees_committed_journal_and_ignores_temp_files(tmp_path: Path, items) -> None:
    path = tmp_path / "faces.h5"
    writer = CacheWriter(path, image_size=SIZE, consolidate_bytes=1 << 40)
    try:
        for item in items[:10]:
            writer.add(item)
        writer.commit()
        for item in items[10:15]:
            writer.add(item)  # added but not committed: invisible
        segments = sorted(journal_dir(path).glob("*.seg"))
        assert len(segments) == 1
        (journal_dir(path) / "0000000099.seg.tmp").write_bytes(segments[0].read_bytes()[:100])
        with open_cache(path) as cache:
            committed = {i.path for i in items[:10]}
            assert set(cache.paths) | {f.path for f in cache.failures} == committed
            by_path = faces_of(items)
            faces = cache.read_faces()
            for i, p in enumerate(cache.paths):
                assert np.abs(faces[i].astype(int) - by_path[p].face).mean() < 4
        damaged = journal_dir(path) / "0000000050.seg"
        damaged.write_bytes(segments[0].read_bytes()[:-10])
        with pytest.raises(CacheError, match=r"0000000050\.seg"):
            open_cache(path)
        damaged.unlink()
    finally:
        writer.close()
    assert not journal_dir(path).exists()


def test_stale_and_orphan_segments_are_not_replayed(tmp_path: Path, items) -> None:
    path = tmp_path / "faces.h5"
    writer = CacheWriter(path, image_size=SIZE, consolidate_bytes=1 << 40)
    for item in items[:6]:
        writer.add(item)
    writer.commit()
    segment = next(journal_dir(path).glob("*.seg"))
    saved = segment.read_bytes()
    writer.close()
    journal_dir(path).mkdir()
    segment.write_bytes(saved)  # already folded into the file: a kill between replace and delete
    with open_cache(path) as cache:
        assert len(cache) + len(cache.failures) == 6
    with CacheWriter(path, image_size=SIZE) as writer:
        assert len(writer.known_keys()) == 6
    assert not journal_dir(path).exists()
    journal_dir(path).mkdir()
    segment.write_bytes(saved)
    path.unlink()  # the user deleted the cache but not its journal: start empty
    with CacheWriter(path, image_size=SIZE) as writer:
        assert writer.known_keys() == set()
    with open_cache(path) as cache:
        assert len(cache) == 0 and cache.failures == [] and cache.read_faces().shape == (0, SIZE, SIZE, 3)


def test_second_writer_is_refused_while_another_process_writes(tmp_path: Path, lfw_dir: Path) -> None:
    path = tmp_path / "faces.h5"
    child = subprocess.Popen(
        [sys.executable, "-c", f"from facetool.cache import CacheWriter\n"
         f"w = CacheWriter({str(path)!r}, image_size={SIZE})\nprint('ready', flush=True)\nimport time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(CacheError, match=f"{re.escape(str(path))}.*another process"):
            CacheWriter(path, image_size=SIZE)
    finally:
        child.kill()
        child.wait()
    with CacheWriter(path, image_size=SIZE) as writer:  # a killed writer's lock dies with it
        assert writer.known_keys() == set()


KILL_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from cache_helpers import lfw_files, make_items, some_identities
    from facetool.cache import CacheWriter
    root = Path({root!r})
    items = make_items(root, lfw_files(root, some_identities(root, {count}, start=200)), {size}, fail_every=9)
    with CacheWriter({path!r}, image_size={size}, encoding={encoding!r}, consolidate_bytes=20_000) as writer:
        todo = [i for i in items if (i.path, i.size, i.mtime_ns) not in writer.known_keys()]
        print("start", len(todo), flush=True)
        for n, item in enumerate(todo, 1):
            writer.add(item)
            if n % 3 == 0 or n == len(todo):
                writer.commit()
                print("committed", item.path, flush=True)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_kill_keeps_every_commit_and_the_next_run_completes(tmp_path: Path, lfw_dir: Path, encoding) -> None:
    path = tmp_path / "faces.h5"
    count = 25
    script = KILL_CHILD.format(tests=str(Path(__file__).parent), root=str(lfw_dir), count=count, size=SIZE,
                               encoding=encoding, path=str(path))  # fmt: skip
    items = make_items(lfw_dir, lfw_files(lfw_dir, some_identities(lfw_dir, count, start=200)), SIZE, 9)
    order = [i.path for i in items]
    rng = random.Random(1234 if encoding == "jpeg" else 99)
    committed: list[str] = []
    for stop in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        start = child.stdout.readline().split()
        assert start[0] == "start", start
        kill_after = rng.randint(1, 4)
        seen = 0
        for line in child.stdout:
            if line.startswith("committed"):
                committed.append(line.split()[1])
                seen += 1
                if seen == kill_after:
                    # land anywhere: adding, encoding, committing, consolidating
                    time.sleep(rng.uniform(0, 0.05))
                    os.kill(child.pid, stop)
                    break
        rest, stderr = child.communicate()
        # the signal came after the run had finished (or while the interpreter was exiting)
        finished = child.returncode == 0 or rest.split()[-1:] == ["done"]
        if not finished and stop == signal.SIGINT:
            assert "KeyboardInterrupt" in stderr
        with open_cache(path) as cache:
            present = set(cache.paths) | {f.path for f in cache.failures}
            missing = set(committed) - present
            assert not missing, f"committed records lost after {stop.name}: {sorted(missing)[:3]}"
            last = max(order.index(p) for p in committed)
            assert set(order[: last + 1]) <= present
            assert len(cache.read_faces()) == len(cache)
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split()[-1] == "done"
    assert not journal_dir(path).exists()
    reference = tmp_path / "reference.h5"
    write_cache(reference, items, SIZE, encoding=encoding)
    with open_cache(path) as resumed, open_cache(reference) as whole:
        assert_same_content(resumed, whole)


def test_records_are_plain_frozen_values(items) -> None:
    record = next(i for i in items if isinstance(i, FaceRecord))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.path = "x"  # type: ignore[misc]


def test_readers_see_a_growing_snapshot_while_another_process_writes(tmp_path: Path, lfw_dir: Path) -> None:
    path = tmp_path / "faces.h5"
    script = KILL_CHILD.format(tests=str(Path(__file__).parent), root=str(lfw_dir), count=25, size=SIZE,
                               encoding="jpeg", path=str(path))  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().startswith("start")
        seen: set[str] = set()
        opens = 0
        while child.poll() is None or opens == 0:
            with open_cache(path) as cache:
                now = set(cache.paths) | {f.path for f in cache.failures}
                assert len(cache.read_faces()) == len(cache)
            assert seen <= now, f"records vanished between two opens: {sorted(seen - now)[:3]}"
            seen, opens = now, opens + 1
        assert child.stdout.read().split()[-1] == "done"
    finally:
        child.kill()
        child.wait()
    with open_cache(path) as cache:
        assert set(cache.paths) | {f.path for f in cache.failures} >= seen


CTRL_C_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started with `&` inherits SIGINT ignored
    sys.path.insert(0, {tests!r})
    from cache_helpers import lfw_files, make_items, some_identities
    from facetool.cache import CacheWriter
    root = Path({root!r})
    items = make_items(root, lfw_files(root, some_identities(root, 6, start=300)), {size})
    with CacheWriter({path!r}, image_size={size}, consolidate_bytes=1 << 40) as writer:
        for item in items[:-2]:
            writer.add(item)
        writer.commit()
        for item in items[-2:]:
            writer.add(item)
        print(len(items), flush=True)
        time.sleep(60)
    """
)


def test_ctrl_c_consolidates_the_commits_and_drops_the_rest(tmp_path: Path, lfw_dir: Path) -> None:
    path = tmp_path / "faces.h5"
    script = CTRL_C_CHILD.format(
        tests=str(Path(__file__).parent), root=str(lfw_dir), size=SIZE, path=str(path)
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    total = int(child.stdout.readline())
    assert journal_dir(path).is_dir()  # committed, not yet consolidated
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert not journal_dir(path).exists()
    items = make_items(lfw_dir, lfw_files(lfw_dir, some_identities(lfw_dir, 6, start=300)), SIZE)
    assert len(items) == total
    with open_cache(path) as cache:
        assert cache.paths == sorted(i.path for i in items[:-2])


def test_consolidation_copies_a_bounded_multiple_of_the_final_size(tmp_path: Path, items) -> None:
    """Many small commits: the file is rewritten only when the journal reaches half of it, so the bytes of all
    the versions written add up to a few times the final file (a rewrite per commit would be quadratic)."""
    path = tmp_path / "faces.h5"
    faces = [i for i in items if isinstance(i, FaceRecord)]
    many = [dataclasses.replace(f, path=f"{k}/{f.path}") for k in range(6) for f in faces]
    written, last = 0, None
    with CacheWriter(path, image_size=SIZE, consolidate_bytes=0) as writer:
        for item in many:
            writer.add(item)
            writer.commit()
            st = path.stat()
            if (st.st_ino, st.st_mtime_ns) != last:
                written, last = written + st.st_size, (st.st_ino, st.st_mtime_ns)
    final = path.stat().st_size
    with open_cache(path) as cache:
        assert len(cache) == len(many)
    assert final < written + final <= 5 * final, (written, final)


def _read_in_child(cache, rows, queue) -> None:
    queue.put(cache.read_faces(rows))


def test_read_faces_in_the_order_given_and_in_forked_workers(tmp_path: Path, items) -> None:
    """Rows come back in the order asked (repeats included), also from workers that inherited the open cache,
    even after a writer replaced the file: they read the file they were given, not whatever the path is now."""
    import multiprocessing as mp

    path = tmp_path / "faces.h5"
    write_cache(path, items, SIZE)
    with open_cache(path) as cache:
        n = len(cache)
        rows = [n - 1, 0, 5, 5, 3, n // 2, 1]
        singles = np.stack([cache.read_faces([r])[0] for r in rows])
        np.testing.assert_array_equal(cache.read_faces(rows), singles)
        np.testing.assert_array_equal(cache.read_faces(np.arange(n))[rows], singles)
        with CacheWriter(path, image_size=SIZE, meta={"replaced": True}):
            pass  # a new meta rewrites the file: a new inode under the same path
        assert open_cache(path).meta == {"replaced": True}
        context = mp.get_context("fork")
        queue = context.Queue()
        workers = [context.Process(target=_read_in_child, args=(cache, rows, queue)) for _ in range(2)]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        for result in results:
            np.testing.assert_array_equal(result, singles)
        np.testing.assert_array_equal(cache.read_faces(rows), singles)


def test_paths_are_read_on_demand_also_after_close(tmp_path: Path, items) -> None:
    path = tmp_path / "faces.h5"
    write_cache(path, items, SIZE)
    with open_cache(path) as cache:
        labels, names = cache.labels.copy(), list(cache.identities)
    assert cache.paths == sorted(faces_of(items))
    assert [names[i] for i in labels] == [faces_of(items)[p].identity for p in cache.paths]
