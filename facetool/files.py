"""File safety shared by every command: atomic outputs, durable renames, folders created or refused in one line,
and the rule that no output is ever written over or inside one of the command's inputs.

Every file facetool produces is written under a temporary name beside its final path (`.NAME.PID@HOST.XXXX.tmp`),
flushed to disk and renamed into place only when complete, so a kill, a full disk or Ctrl-C at any instant leaves
the previous file (or none) under the final name, never a torn one. A process killed outright (SIGKILL, a crash)
cannot remove its temporary file; the next write of the same output does, once that process is gone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
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


def _host_tag() -> str:
    """This machine, in 8 hex digits: a folder shared between machines holds temporaries of processes elsewhere."""
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'surrogateescape')):08x}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphaned_temps(path: Path | str) -> list[Path]:
    """Delete the temporaries of `path` whose writer is gone (killed or crashed mid-write); what was removed.

    Only names this module gives (`.NAME.PID@HOST.XXXX.tmp` beside `path`), made on this machine by a process
    that no longer exists; a live writer's temporary, another machine's, or any other file is left alone.
    """
    path = Path(path)
    owned = re.compile(rf"\.{re.escape(path.name)}\.(\d+)@{_host_tag()}\.[a-z0-9_]+{re.escape(TEMP_SUFFIX)}")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        found = owned.fullmatch(entry.name)
        if found and entry.is_file(follow_symlinks=False) and not _process_exists(int(found[1])):
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def temp_path_for(path: Path | str) -> Path:
    """A fresh, unused temporary name in the folder of `path` (created empty, so nobody else takes it).

    The name holds this process's id and machine, so a later write of `path` can tell it orphaned and remove
    it (`remove_orphaned_temps`, called here first). Its mode follows the umask as a plainly created file's
    would (mkstemp alone would leave it 0600).
    """
    path = Path(path)
    remove_orphaned_temps(path)
    prefix = f".{path.name}.{os.getpid()}@{_host_tag()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=path.parent)
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


@contextmanager
def atomic_outputs(paths: Sequence[Path | str]) -> Iterator[list[Path]]:
    """`atomic_output` for files that belong together (a `.rec`, its `.idx`, `property`): temporaries renamed
    in the order given (the one readers check first last), signals held across the renames; none on error."""
    finals, temps = [Path(p) for p in paths], []
    try:
        for path in finals:
            with stop_signals_held():
                temps.append(temp_path_for(path))
        yield list(temps)
        for tmp in temps:
            fsync_path(tmp)
        with stop_signals_held():
            for tmp, path in zip(temps, finals, strict=True):
                os.replace(tmp, path)
    except BaseException:
        _ = [tmp.unlink(missing_ok=True) for tmp in temps]
        raise
    for folder in {path.parent for path in finals}:
        fsync_path(folder)


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any], *, make_parent: bool = True) -> None:
    """Call `write(handle)` on a temporary binary file beside `path`, fsync it, then rename it over `path`."""
    with atomic_output(path, make_parent=make_parent) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_copy(source: Path | str, path: Path | str) -> None:
    """Make `path` a complete copy of the finished file `source`, atomically, without writing its bytes again.

    A hard link of `source` at a temporary name is renamed over `path`: the two names share the data, and a
    later atomic replace of either gives that name a new file, leaving the other as it was. Where the folder's
    file system has no hard links, the bytes are copied (and fsynced) instead.
    """
    source, path = Path(source), Path(path)
    with atomic_output(path, make_parent=False) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())


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


class FileReadError(FacetoolError):
    """A file that cannot be read as asked; `reason` is the message without the path (for records that keep
    the path apart, such as a face cache's failures)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


_NOT_REGULAR = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _NOT_REGULAR if test(mode)), "an unknown kind of file")


def read_regular_file(path: Path | str, *, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; FileReadError naming it otherwise.

    The kind of file is checked before it is opened and again on the open descriptor (opened non-blocking),
    so a FIFO cannot block, a device such as `/dev/zero` is never read, and a file swapped in between is
    caught. At most `limit + 1` bytes are read, so a file that grows while it is read is refused too.
    """
    path = Path(path)
    try:
        kind = _not_regular(os.stat(path).st_mode)
        if kind is not None:
            raise FileReadError(path, f"is {kind}, not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileReadError(path, f"{what} not found") from None
    except OSError as exc:
        raise FileReadError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        kind = _not_regular(info.st_mode)
        if kind is not None:
            raise FileReadError(path, f"is {kind}, not a regular file")
        if info.st_size > limit:
            raise FileReadError(path, f"{what} is larger than {limit:,} bytes; refusing to read it")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise FileReadError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise FileReadError(path, f"{what} is larger than {limit:,} bytes; refusing to read it")
    return data


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
