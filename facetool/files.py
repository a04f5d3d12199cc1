"""File safety shared by every command: atomic outputs, durable renames, folders created or refused in one line,
and the rule that no output is ever written over or inside one of the command's inputs.

Every file facetool produces is written under a temporary name beside its final path (`.NAME.XXXX.tmp`), flushed
to disk and renamed into place only when complete, so a kill, a full disk or Ctrl-C at any instant leaves the
previous file (or none) under the final name, never a torn one.
"""

from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from facetool.errors import FacetoolError, UsageError

TEMP_SUFFIX = ".tmp"


def fsync_path(path: Path | str) -> None:
    """Flush a file or a folder (the rename inside it) to disk; best effort where the platform refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_dir(path: Path | str, what: str = "output folder") -> Path:
    """Create a folder (and its parents) or fail with one FacetoolError line saying why."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FacetoolError(f"{path}: cannot create the {what}: it exists and is not a folder") from None
    except NotADirectoryError:
        raise FacetoolError(f"{path}: cannot create the {what}: a parent of it is a file") from None
    except OSError as exc:
        raise FacetoolError(f"{path}: cannot create the {what} ({exc.strerror or exc})") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path_for(path: Path | str) -> Path:
    """A fresh, unused temporary name in the folder of `path` (created empty, so nobody else takes it).

    Its mode follows the umask as a plainly created file's would (mkstemp alone would leave it 0600).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block and deliver them when it ends.

    For the few steps between creating a temporary file and arming the code that removes it: a Ctrl-C landing
    there would otherwise leave the file behind. Only the main thread can hold signals; elsewhere (and for a
    signal ignored or handled outside Python) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    for sig in _STOP_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not None and handler != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in caught:
            signal.raise_signal(signum)


@contextmanager
def atomic_output(path: Path | str, *, make_parent: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends cleanly it is fsynced and renamed over `path`.

    For writers that take a file name (h5py, numpy, matplotlib). On any exception, KeyboardInterrupt included,
    the temporary file is removed and `path` is left as it was; a Ctrl-C that lands while the temporary file is
    being created is held until its removal is armed.
    """
    path = Path(path)
    if make_parent:
        make_dir(path.parent, "folder of the output")
    tmp: Path | None = None
    try:
        with stop_signals_held():
            tmp = temp_path_for(path)
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any], *, make_parent: bool = True) -> None:
    """Call `write(handle)` on a temporary binary file beside `path`, fsync it, then rename it over `path`."""
    with atomic_output(path, make_parent=make_parent) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_together(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write several files as one unit (a model and its card): every one of them, or none.

    Each file is written and fsynced under a temporary name beside it first, so a full disk, a size limit or a
    read-only folder fails before any final name changes; the temporaries are then renamed into place in order,
    with SIGINT and SIGTERM held so no Ctrl-C lands between two renames. When a rename fails, the files already
    renamed are removed again. Only a kill -9 or a crash between two renames (microseconds) can leave the first
    files without the later ones; readers must detect that (a model card names its model's SHA-256).
    FacetoolError naming the file and the OS error when anything fails; no temporary is left behind.
    """
    temps: list[Path] = []
    placed: list[Path] = []
    current = files[0][0] if files else Path()
    try:
        for path, data in files:
            current = path
            with stop_signals_held():
                temps.append(temp_path_for(path))
            with open(temps[-1], "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        with stop_signals_held():
            for (path, _data), tmp in zip(files, temps, strict=True):
                current = path
                os.replace(tmp, path)
                placed.append(path)
    except BaseException as exc:
        for path in (*temps, *placed):
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FacetoolError(f"{current}: cannot write ({exc.strerror or exc})") from None
        raise
    for folder in {path.parent for path, _data in files}:
        fsync_path(folder)


def read_text_limited(path: Path | str, *, limit: int = 16 * 1024 * 1024, what: str = "file") -> str:
    """Read a UTF-8 text file of at most `limit` bytes (a leading BOM is dropped).

    Reads at most `limit + 1` bytes, so an endless stream (`/dev/zero`, a FIFO) or a huge file ends in one
    FacetoolError naming it instead of exhausting memory; undecodable bytes are named the same way.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise FacetoolError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise FacetoolError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise FacetoolError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise FacetoolError(f"{path}: {what} is larger than {limit:,} bytes; refusing to read it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FacetoolError(f"{path}:{line}: {what} is not UTF-8 text") from None
    return text.removeprefix("\ufeff")


def lock_exclusive(
    path: Path | str,
    *,
    cannot_create: str,
    busy: str,
    error: type[FacetoolError] = FacetoolError,
    mode: int = 0o666,
) -> int:
    """Open (creating) the lock file `path` and hold an exclusive flock on it; the file descriptor.

    Never waits: when another process holds the lock, `error(busy)`; when the file cannot be created,
    `error("<cannot_create> (<why>)")`. Release with `unlock`.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    except OSError as exc:
        raise error(f"{cannot_create} ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise error(busy) from None
    return fd


def unlock(fd: int) -> None:
    """Release a lock taken by `lock_exclusive` and close its descriptor."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def remove_stale_temp_files(directory: Path | str) -> list[Path]:
    """Delete the temporary files interrupted atomic writes left in `directory`; returns what was removed."""
    stale = sorted(p for p in Path(directory).glob(f".*{TEMP_SUFFIX}") if p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _resolved(path: Path | str) -> Path:
    return Path(os.path.abspath(os.path.realpath(path)))


def check_output_not_input(output: Path | str, inputs: Iterable[Path | str], *, option: str = "-o") -> None:
    """Refuse an output that is one of the inputs or lies inside an input folder.

    Compared after resolving links, so a second name for the same file is caught too. An output folder that
    merely contains an input is allowed: nothing is ever written over or deleted from an input.
    """
    out = _resolved(output)
    for item in inputs:
        src = _resolved(item)
        same = out == src
        if not same and out.exists() and src.exists():
            try:
                same = os.path.samefile(out, src)
            except OSError:
                same = False
        if same:
            raise UsageError(f"{output}: {option} names an input of this command; choose another output path")
        if src.is_dir() and out.is_relative_to(src):
            raise UsageError(
                f"{output}: {option} lies inside the input folder {item}; write outputs outside the inputs"
            )
