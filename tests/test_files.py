"""facetool.files: atomic outputs, umask-respecting modes, bounded reads, outputs never over inputs."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import file_size_limit

from facetool.errors import FacetoolError, UsageError
from facetool.files import (
    atomic_output,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_output_not_input,
    make_dir,
    read_regular_file,
    read_text_limited,
    remove_stale_temp_files,
)


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk died")
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def _through_atomic_output(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


WRITERS = {
    "atomic_output": _through_atomic_output,
    "atomic_write": lambda path, data: atomic_write(path, lambda handle: handle.write(data)),
    "atomic_write_bytes": atomic_write_bytes,
    "atomic_write_text": lambda path, data: atomic_write_text(path, data.decode("ascii")),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_write_that_fails_partway_keeps_previous_file_and_leaves_no_temp(tmp_path: Path, writer: str) -> None:
    """A real EFBIG after the first MiB of a 3 MiB write (RLIMIT_FSIZE), as a disk filling up would do."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(OSError) as caught, file_size_limit(1 << 20):
        WRITERS[writer](target, b"n" * (3 << 20))
    assert caught.value.errno == errno.EFBIG
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]
    WRITERS[writer](target, b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_write_callback_that_raises_after_some_bytes_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")

    def half_then_fail(handle) -> None:
        handle.write(b"half of it")
        handle.flush()
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_kill_during_write_leaves_previous_file_and_a_removable_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    code = (
        "import os, sys\n"
        "from facetool.files import atomic_output\n"
        "with atomic_output(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    assert proc.returncode == -9
    assert target.read_bytes() == b"previous"
    removed = remove_stale_temp_files(tmp_path)
    assert len(removed) == 1 and removed[0].name.startswith(".out.bin.")
    assert list(tmp_path.iterdir()) == [target]


def test_output_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_make_dir_file_in_the_way_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(FacetoolError, match="cannot create the output folder: it exists and is not a folder"):
        make_dir(tmp_path / "f")
    with pytest.raises(FacetoolError, match="a parent of it is a file"):
        make_dir(tmp_path / "f" / "sub")


def test_output_equal_to_input_or_inside_input_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "images"
    data.mkdir()
    cache = tmp_path / "faces.h5"
    cache.write_bytes(b"x")
    (tmp_path / "alias.h5").symlink_to(cache)
    with pytest.raises(UsageError, match="names an input"):
        check_output_not_input(cache, [cache])
    with pytest.raises(UsageError, match="names an input"):
        check_output_not_input(tmp_path / "alias.h5", [cache])
    with pytest.raises(UsageError, match="inside the input folder"):
        check_output_not_input(data / "report", [data])
    check_output_not_input(tmp_path / "out.h5", [cache, data])
    check_output_not_input(tmp_path, [data])


def test_read_text_limited_bounds_endless_streams_and_drops_bom(tmp_path: Path) -> None:
    with pytest.raises(FacetoolError, match="larger than 1,024 bytes"):
        read_text_limited("/dev/zero", limit=1024, what="config file")
    bom = tmp_path / "c.toml"
    bom.write_bytes(b"\xef\xbb\xbfa = 1\n")
    assert read_text_limited(bom) == "a = 1\n"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    with pytest.raises(FacetoolError, match=r"bad.txt:2: pairs file is not UTF-8"):
        read_text_limited(bad, what="pairs file")


def test_identity_spellings_and_digests() -> None:
    import unicodedata

    from facetool.identities import identity_digest, identity_digests, normalize_identity

    nfd = unicodedata.normalize("NFD", "José_Dirceu")
    assert nfd != "José_Dirceu" and normalize_identity(nfd) == "José_Dirceu"
    assert identity_digest(nfd) == identity_digest("José_Dirceu")
    assert len(identity_digest("a")) == 16 and identity_digest("a") != identity_digest("b")
    assert identity_digests(["b", "a", nfd, "José_Dirceu"]) == sorted(
        {identity_digest("a"), identity_digest("b"), identity_digest(nfd)}
    )


_CTRL_C_AT_CREATION = """
import os, signal, sys, tempfile
from pathlib import Path
from facetool import files
signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started with `&` inherits SIGINT ignored

real = tempfile.mkstemp

def mkstemp_then_ctrl_c(*args, **kwargs):
    made = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)
    return made

files.tempfile.mkstemp = mkstemp_then_ctrl_c
target = Path(sys.argv[1]) / "out.bin"
try:
    with files.atomic_output(target) as tmp:
        print("block entered", flush=True)
        tmp.write_bytes(b"never")
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_the_instant_the_temp_file_is_created_leaves_nothing(tmp_path: Path) -> None:
    """A real SIGINT delivered right after mkstemp: the temporary file is still removed, the target never made."""
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_AT_CREATION, tmp_path], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["interrupted"], "the Ctrl-C is delivered before the block runs"
    assert list(tmp_path.iterdir()) == []


_HELD = """
import os, signal
from facetool.files import stop_signals_held
signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started with `&` inherits SIGINT ignored

signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    with stop_signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        print("block finished", flush=True)
except KeyboardInterrupt:
    print("delivered at the end", flush=True)
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)
"""


def test_stop_signals_held_delivers_at_the_end_and_restores_handlers() -> None:
    done = subprocess.run([sys.executable, "-c", _HELD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["block finished", "delivered at the end", "True True"]


_WRITER = (
    "import os, sys, time\n"
    "from facetool.files import atomic_output\n"
    "with atomic_output(sys.argv[1]) as tmp:\n"
    "    tmp.write_bytes(b'partial')\n"
    "    time.sleep(600)\n"
)


def _writer_in_its_block(target: Path) -> tuple[subprocess.Popen, Path]:
    """A real process holding an atomic write of `target` open, and its temporary file."""
    before = set(target.parent.glob(f".{target.name}.*.tmp"))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)])
    deadline = time.monotonic() + 60
    while not (new := set(target.parent.glob(f".{target.name}.*.tmp")) - before):
        assert proc.poll() is None and time.monotonic() < deadline, "the writer ended before its write"
        time.sleep(0.02)
    return proc, new.pop()


def test_the_next_write_removes_the_temp_of_a_killed_writer_only(tmp_path: Path) -> None:
    """A SIGKILL (or a crash) mid-write leaves `.NAME.*.tmp`; the next write of NAME removes it, and nothing else:
    not a live writer's temporary, not another output's, not a file facetool did not name."""
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    killed, orphan = _writer_in_its_block(target)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL and orphan.exists()
    other = tmp_path / "card.json"
    other_killed, other_orphan = _writer_in_its_block(other)
    other_killed.send_signal(signal.SIGKILL)
    other_killed.wait(timeout=60)
    foreign = tmp_path / ".model.onnx.someone-elses.tmp"
    foreign.write_bytes(b"not ours")
    live, live_temp = _writer_in_its_block(target)
    try:
        atomic_write_text(target, "new")
        assert target.read_text() == "new"
        assert not orphan.exists()
        assert live_temp.exists() and other_orphan.exists() and foreign.exists()
    finally:
        live.kill()
        live.wait(timeout=60)


def test_read_regular_file_refuses_fifos_devices_folders_and_oversize_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(FacetoolError, match=rf"^{fifo}: is a FIFO \(named pipe\), not a regular file$"):
        read_regular_file(fifo, limit=1000)
    with pytest.raises(FacetoolError, match=r"^/dev/zero: is a character device, not a regular file$"):
        read_regular_file("/dev/zero", limit=1000)
    with pytest.raises(FacetoolError, match=rf"^{tmp_path}: is a folder, not a regular file$"):
        read_regular_file(tmp_path, limit=1000)
    assert time.monotonic() - start < 5
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(FacetoolError, match=r"big.bin: image file is larger than 1,000 bytes"):
        read_regular_file(big, limit=1000, what="image file")
    assert read_regular_file(big, limit=1001) == b"x" * 1001
    with pytest.raises(FacetoolError, match=r"absent.jpg: image file not found"):
        read_regular_file(tmp_path / "absent.jpg", limit=10, what="image file")
