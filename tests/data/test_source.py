"""Face sources on real LFW caches: streamed and preloaded agree face for face, round for round, triplet for
triplet; streaming reads only the rows asked for; worker failures are one error; nothing is left running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cache_helpers import some_identities, write_people_cache
from torch import nn

from facetool.cache import open_cache
from facetool.data.choose import SourceChoice, choose_kind, host_available_bytes, open_face_source
from facetool.data.sampling import PeopleSampler
from facetool.data.source import PreloadedSource, batches
from facetool.data.split import drop_small_identities, split_identities
from facetool.data.stream import StreamedSource
from facetool.errors import CacheError, FacetoolError, UsageError
from facetool.miners import get_miner

SIZE = 40
GIB = 1 << 30


@pytest.fixture(scope="module")
def cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEG cache of LFW crops: 14 people, up to 6 images each (some have one)."""
    people = some_identities(lfw_dir, 14, start=20)
    return write_people_cache(lfw_dir, tmp_path_factory.mktemp("source") / "faces.h5", people, 6, SIZE)


def open_both(path: Path, **kwargs: object) -> tuple[PreloadedSource, StreamedSource]:
    pre, _ = open_face_source(path, mode="preload")
    streamed, _ = open_face_source(path, mode="stream", workers=2, slot_faces=5, **kwargs)
    assert isinstance(pre, PreloadedSource) and isinstance(streamed, StreamedSource)
    return pre, streamed


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_streamed_and_preloaded_fetch_the_cache_faces_in_the_order_asked(cache: Path) -> None:
    pre, streamed = open_both(cache)
    with pre, streamed, open_cache(cache) as reference:
        assert streamed.identities == pre.identities == reference.identities
        np.testing.assert_array_equal(streamed.labels, reference.labels)
        rows = np.random.default_rng(3).permutation(len(pre))[:23]
        rows = np.concatenate([rows, rows[:4]])
        expected = torch.from_numpy(reference.read_faces(rows))
        streamed.prefetch(rows)
        got = streamed.fetch(rows, "cpu")
        assert got.dtype == torch.uint8 and got.shape == (len(rows), SIZE, SIZE, 3)
        assert torch.equal(got, expected)
        assert torch.equal(pre.fetch(rows, "cpu"), expected)
        assert streamed.fetch(rows[:0], "cpu").shape == (0, SIZE, SIZE, 3)
        with pytest.raises(IndexError):
            streamed.fetch(np.array([len(pre)]), "cpu")


def test_same_seed_gives_the_same_split_round_faces_and_triplets(cache: Path) -> None:
    pre, streamed = open_both(cache)
    with pre, streamed, open_cache(cache) as reference:
        (pre_train, pre_val), (st_train, st_val) = (
            split_identities(drop_small_identities(s)[0], 0.25, seed=7) for s in (pre, streamed)
        )
        assert st_train.identities == pre_train.identities
        assert st_val.identities == pre_val.identities
        assert set(st_train.identities).isdisjoint(st_val.identities)
        np.testing.assert_array_equal(st_train.labels, pre_train.labels)
        names = [reference.identities[i] for i in reference.labels[st_train.cache_rows]]
        assert names == [st_train.identities[i] for i in st_train.labels]
        np.testing.assert_array_equal(st_train.cache_rows, pre_train.cache_rows)

        rounds = []
        for source in (pre_train, st_train):
            rows = PeopleSampler(source.labels, 6, 4).sample(np.random.default_rng(11))
            faces = source.fetch(rows, "cpu")
            torch.manual_seed(0)
            model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.Flatten(), nn.LazyLinear(8))
            emb = nn.functional.normalize(model(faces.permute(0, 3, 1, 2).float() / 255), dim=1)
            labels = torch.as_tensor(source.labels[rows])
            mined = get_miner("semihard")(emb.detach(), labels, 0.5, torch.Generator().manual_seed(5))
            rounds.append((rows, faces, mined))
        (rows_a, faces_a, mined_a), (rows_b, faces_b, mined_b) = rounds
        np.testing.assert_array_equal(rows_a, rows_b)
        assert torch.equal(faces_a, faces_b)
        assert torch.equal(faces_a, torch.from_numpy(reference.read_faces(st_train.cache_rows[rows_a])))
        assert mined_a.num_triplets > 0
        for field in ("anchors", "positives", "negatives"):
            assert torch.equal(getattr(mined_a, field), getattr(mined_b, field))
        for view in (pre_train, pre_val, st_train, st_val):
            view.close()


def test_validation_batches_cover_the_source_in_order(cache: Path) -> None:
    _, streamed = open_both(cache)
    with streamed, open_cache(cache) as reference:
        parts = list(batches(streamed, 7, "cpu"))
        assert [len(f) for f, _ in parts[:-1]] == [7] * (len(parts) - 1)
        assert torch.equal(torch.cat([f for f, _ in parts]), torch.from_numpy(reference.read_faces()))
        np.testing.assert_array_equal(np.concatenate([lab for _, lab in parts]), reference.labels)


def test_shards_are_disjoint_and_cover_every_identity(cache: Path) -> None:
    source, _ = open_face_source(cache, mode="preload")
    with source:
        shards = [source.shard(r, 3) for r in range(3)]
        names = [name for s in shards for name in s.identities]
        assert sorted(names) == source.identities
        assert sum(len(s) for s in shards) == len(source)
        rows = np.concatenate([s.cache_rows for s in shards])
        assert len(np.unique(rows)) == len(source)


def test_a_preloaded_source_decodes_from_the_cache_it_was_opened_on(
    cache: Path, lfw_dir: Path, tmp_path: Path
) -> None:
    """The cache file is replaced by another after opening, before any face is decoded: the source still gives
    the faces its labels came from (it keeps the file it opened), and so do its subsets."""
    path = tmp_path / "faces.h5"
    shutil.copy(cache, path)
    with open_cache(cache) as reference:
        expected = torch.from_numpy(reference.read_faces())
    source, _ = open_face_source(path, mode="preload")
    with source:
        half = source.subset(np.arange(source.num_identities // 2))
        people = some_identities(lfw_dir, 14, start=60)
        others = write_people_cache(lfw_dir, tmp_path / "other.h5", people, 6, SIZE)
        os.replace(others, path)
        with half:
            assert torch.equal(half.fetch(np.arange(len(half)), "cpu"), expected[half.cache_rows])
        assert torch.equal(source.fetch(np.arange(len(source)), "cpu"), expected)


def test_streaming_reads_only_the_rows_asked_for(cache: Path, tmp_path: Path) -> None:
    """One face's bytes are destroyed: preloading fails, streaming every other identity works, and streaming
    the broken face is one FacetoolError naming the cache, after which the source still closes cleanly."""
    damaged = tmp_path / "damaged.h5"
    shutil.copy(cache, damaged)
    with open_cache(cache) as reference:
        labels, faces = reference.labels, reference.read_faces()
    broken = int(np.flatnonzero(labels == labels[len(labels) // 2])[0])
    with h5py.File(damaged, "r+") as h5:
        start, stop = h5["faces/jpeg_offset"][broken : broken + 2]
        h5["faces/jpeg"][start:stop] = np.full(stop - start, 7, np.uint8)

    pre, _ = open_face_source(damaged, mode="preload")
    with pre, pytest.raises(CacheError, match="corrupted"):
        pre.fetch(np.array([0]), "cpu")
    source, _ = open_face_source(damaged, mode="stream", workers=2, slot_faces=4)
    with source:
        others = source.subset([i for i in range(source.num_identities) if i != labels[broken]])
        got = others.fetch(np.arange(len(others)), "cpu")
        assert torch.equal(got, torch.from_numpy(faces[others.cache_rows]))
        with pytest.raises(FacetoolError) as err:
            source.fetch(np.array([broken]), "cpu")
        message = str(err.value)
        assert str(damaged) in message and "corrupted" in message and "\n" not in message
        others.close()
    pids = source.pool.pids
    assert not any(alive(pid) for pid in pids)


def test_close_stops_every_worker_and_removes_the_ring(cache: Path) -> None:
    source, choice = open_face_source(cache, mode="stream", workers=2)
    assert choice.kind == "stream" and "2 reading worker(s)" in choice.reason
    ring = source.pool.spec.ring_path
    source.fetch(np.arange(5), "cpu")
    pids = source.pool.pids
    assert all(alive(pid) for pid in pids)
    deadline = time.monotonic() + 10
    while ring.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ring.exists()  # unlinked once every worker mapped it: a kill cannot leak it
    view = source.subset([0, 1])
    source.close()
    assert all(alive(pid) for pid in pids)  # the view still reads through them
    view.fetch(np.arange(2), "cpu")
    view.close()
    view.close()
    assert not any(alive(pid) for pid in pids)


def test_a_killed_worker_is_one_error_naming_the_cache(cache: Path) -> None:
    source, _ = open_face_source(cache, mode="stream", workers=1)
    with source:
        source.fetch(np.arange(3), "cpu")
        pid = source.pool.pids[0]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(FacetoolError, match=re.escape(str(cache)) + ".*worker died"):
            source.fetch(np.arange(len(source)), "cpu")


def test_a_stopped_worker_is_one_error_naming_it_and_it_is_killed(cache: Path) -> None:
    """A real SIGSTOP to a worker holding chunks: after worker_timeout_s the read fails with one line naming
    the worker (index, pid, state) and its rows, the worker is killed, and closing leaves none running. If no
    watchdog fires, a timer kills the worker after 30 s and the read fails as a death instead."""
    source, _ = open_face_source(cache, mode="stream", workers=2, slot_faces=5, worker_timeout_s=1.0)
    with source:
        source.fetch(np.arange(3), "cpu")
        pids = source.pool.pids
        os.kill(pids[0], signal.SIGSTOP)
        fallback = threading.Timer(30, os.kill, (pids[0], signal.SIGKILL))
        fallback.start()
        try:
            with pytest.raises(FacetoolError) as caught:
                source.fetch(np.arange(len(source)), "cpu")
        finally:
            fallback.cancel()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(
            f"{cache}: face reading worker 0 (pid {pids[0]}, stopped) gave no answer for "
        )
        assert re.search(r"while decoding \d+ faces \(cache rows \d+ to \d+\); it was killed", message)
    assert not any(alive(pid) for pid in pids)


def test_a_missing_cache_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=re.escape(str(tmp_path / "none.h5"))):
        open_face_source(tmp_path / "none.h5", mode="stream")


@pytest.mark.parametrize(
    ("mode", "device", "decoded", "device_free", "host_free", "kind"),
    [
        ("auto", "cpu", 1 * GIB, None, 10 * GIB, "preload-host"),
        ("auto", "cpu", 6 * GIB, None, 10 * GIB, "stream"),
        ("auto", "cpu", 1 * GIB, None, None, "stream"),
        ("auto", "cuda", 1 * GIB, 80 * GIB, 10 * GIB, "preload-device"),
        ("auto", "cuda", 50 * GIB, 80 * GIB, 200 * GIB, "preload-host"),
        ("auto", "cuda", 50 * GIB, 80 * GIB, 20 * GIB, "stream"),
        ("preload", "cpu", 50 * GIB, None, 1 * GIB, "preload-host"),
        ("stream", "cuda", 1, 80 * GIB, 10 * GIB, "stream"),
    ],
)
def test_choice_by_decoded_size(mode, device, decoded, device_free, host_free, kind) -> None:
    choice = choose_kind(mode, torch.device(device), decoded, device_free, host_free)
    assert isinstance(choice, SourceChoice) and choice.kind == kind
    assert f"{decoded / GIB:.2f} GiB" in choice.reason and "\n" not in choice.reason


def test_unknown_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'lazy'"):
        choose_kind("lazy", torch.device("cpu"), 1, None, 1)  # type: ignore[arg-type]


def test_host_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:   2048 kB\n")
    assert host_available_bytes(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal: 100 kB\n")
    assert host_available_bytes(meminfo) is None
    assert host_available_bytes(tmp_path / "absent") is None
    assert host_available_bytes() > 0


def test_rounds_prefetched_beyond_the_depth_are_still_fetched_right(cache: Path) -> None:
    _, streamed = open_both(cache)
    with streamed, open_cache(cache) as reference:
        rounds = [np.arange(k, len(streamed), 3) for k in range(3)]
        for rows in rounds:
            streamed.prefetch(rows)
        for rows in rounds:
            assert torch.equal(streamed.fetch(rows, "cpu"), torch.from_numpy(reference.read_faces(rows)))


INTERRUPTED = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started with `&` inherits SIGINT ignored
import numpy as np
from facetool.data.choose import open_face_source
source, _ = open_face_source(sys.argv[1], mode="stream", workers=2, slot_faces=2)
source.fetch(np.arange(4), "cpu")
print(*source.pool.pids, flush=True)
while True:
    source.fetch(np.arange(len(source)), "cpu")
"""


def test_ctrl_c_while_streaming_leaves_no_worker(cache: Path) -> None:
    """A real SIGINT to a process in the middle of reading: it ends with KeyboardInterrupt, and its
    workers (in their own session, so the signal reaches only the parent) are stopped and reaped."""
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)
