"""A face source read on demand by worker processes, so training memory does not grow with the cache.

A request (the rows of one round) is sorted by cache row and cut into chunks of at most `slot_faces` rows,
each a contiguous run of reads. Workers (`python -m facetool.data.stream_worker`, one read-only cache each,
two chunks in hand at most) decode a chunk into a slot of a shared-memory ring; a collector thread in this
process copies the slot into the request's output tensor (pinned when the faces go to CUDA) at the chunk's
positions and hands the slot to the next chunk. Memory is bounded: the ring (2 x workers x slot_faces faces)
plus the outputs of at most `depth` requests. A worker's error or death becomes one FacetoolError naming the
cache, and so does a worker that holds a chunk for `worker_timeout_s` without answering (stopped by SIGSTOP,
hung in a read): the error names it (index, pid, process state, the rows it was reading) and it is killed.
With `encoded`, workers send the chunk's stored JPEG bytes instead and the source decodes the whole request
at once on its device (`facetool.data.jpeg`). `close` (also at interpreter exit) stops and
reaps every worker; a worker whose parent dies sees its socket close and exits, so none is left behind.
"""

from __future__ import annotations

import collections
import contextlib
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np
import torch

from facetool.config.train import WORKER_TIMEOUT_S
from facetool.data.jpeg import decode_payloads
from facetool.data.source import Backend, FaceSource, to_device
from facetool.data.stream_worker import READY, WorkerSpec, labels_digest, one_line, ring_view
from facetool.errors import FacetoolError
from facetool.files import stop_signals_held

_JOIN_SECONDS = 5.0
_PER_WORKER = 2
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class _Request:
    rows: np.ndarray
    out: torch.Tensor
    chunks_left: int
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    cancelled: bool = False
    payloads: list[np.ndarray | None] = field(default_factory=list)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen
    conn: Connection
    tasks: dict[int, np.ndarray] = field(default_factory=dict)
    since: float = 0.0

    @property
    def busy(self) -> int:
        return len(self.tasks)


def _ring_file(nbytes: int) -> Path:
    """A file of `nbytes` reserved in shared memory (/dev/shm when usable, else the temp folder)."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    fd, name = tempfile.mkstemp(prefix="facetool-ring-", dir=folder)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        os.unlink(name)
        raise FacetoolError(f"{name}: cannot reserve {nbytes:,} bytes for streaming faces ({exc})") from None
    finally:
        os.close(fd)
    return Path(name)


_STATES = {"T": "stopped", "t": "stopped by a debugger", "D": "waiting on the disk", "Z": "exited"}


def _process_state(pid: int) -> str:
    """The state of `pid` from /proc in words ("stopped", "running", ...), for an error message."""
    try:
        letter = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "state unknown"
    return _STATES.get(letter, {"R": "running", "S": "sleeping"}.get(letter, f"state {letter}"))


def _start_worker(index: int) -> _Worker:
    """A worker interpreter in its own session (a Ctrl-C reaches only the parent, which stops it)."""
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "facetool.data.stream_worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        ours.close()
        raise FacetoolError(f"cannot start a face reading worker ({exc})") from None
    finally:
        theirs.close()
    return _Worker(index, proc, Connection(ours.detach()))


class WorkerPool(Backend):
    """Worker processes reading one cache into a shared ring, and the thread that collects their output."""

    def __init__(
        self,
        cache_path: Path,
        labels: np.ndarray,
        image_size: int,
        *,
        workers: int,
        slot_faces: int = 64,
        pin: bool = False,
        depth: int = 2,
        encoded: bool = False,
        worker_timeout_s: float = WORKER_TIMEOUT_S,
    ) -> None:
        super().__init__(cache_path)
        self.worker_timeout_s = worker_timeout_s
        self.pin = pin
        self.encoded = encoded
        self.depth = depth
        self.image_size = image_size
        slots = _PER_WORKER * workers
        ring_path: Path | None = None
        try:
            with stop_signals_held():
                ring_path = _ring_file(slots * slot_faces * image_size * image_size * 3)
            self.spec = WorkerSpec(
                cache_path, len(labels), image_size, labels_digest(labels), ring_path, slots, slot_faces
            )
            with open(ring_path, "r+b") as handle:
                self._map = mmap.mmap(handle.fileno(), 0)
            self._ring: np.ndarray | None = ring_view(self._map, self.spec)
            self._lock = threading.Lock()
            self._free = list(range(slots))
            self._backlog: collections.deque[tuple[_Request, np.ndarray, np.ndarray]] = collections.deque()
            self._inflight: dict[int, tuple[_Request, np.ndarray]] = {}
            self._pending: collections.OrderedDict[bytes, _Request] = collections.OrderedDict()
            self._failure: str | None = None
            self._stopping = threading.Event()
            self._workers: list[_Worker] = []
            self._collector: threading.Thread | None = None
            self._finalizer = weakref.finalize(self, self._stop)
        except BaseException:
            if ring_path is not None:
                ring_path.unlink(missing_ok=True)
            raise
        try:
            for index in range(workers):
                self._workers.append(_start_worker(index))
                self._workers[-1].conn.send(self.spec)
        except BaseException:
            self._finalizer()
            raise
        self._collector = threading.Thread(target=self._collect, name="facetool-stream", daemon=True)
        self._collector.start()

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [w.proc.pid for w in self._workers]

    def worker_peak_bytes(self) -> int:
        """The workers' peak resident memory together (VmHWM of /proc), for logs and benchmarks."""
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
                total += int(status.split("VmHWM:")[1].split()[0]) * 1024
        return total

    def worker_cpu_seconds(self) -> float:
        """CPU time the workers have used so far (user + system, from /proc), for per-core rates."""
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def _fail(self, message: str) -> None:
        """Fail every request now and later with one line naming the cache."""
        if str(self.cache_path) not in message:
            message = f"{self.cache_path}: {message}"
        with self._lock:
            self._failure = self._failure or message
            for request in list(self._pending.values()):
                request.error = self._failure
                request.done.set()

    def _dispatch(self) -> None:
        """Hand queued chunks to free slots of the least busy workers (called with the lock held)."""
        while self._free and self._backlog:
            worker = min(self._workers, key=lambda w: w.busy)
            if worker.busy >= _PER_WORKER:
                return
            request, positions, rows = self._backlog.popleft()
            if request.cancelled:
                continue
            slot = self._free.pop()
            self._inflight[slot] = (request, positions)
            if not worker.tasks:
                worker.since = time.monotonic()
            worker.tasks[slot] = rows
            worker.conn.send((slot, rows, self.encoded))

    def _died(self, worker: _Worker) -> str:
        code = worker.proc.wait(_JOIN_SECONDS)
        return f"a face reading worker died (exit code {code})"

    def _collect(self) -> None:
        ready = 0
        conns = {w.conn: w for w in self._workers}
        while not self._stopping.is_set():
            for conn in wait(list(conns), timeout=0.5):
                worker = conns[conn]
                try:
                    slot, error, payloads = conn.recv()
                except (EOFError, OSError):
                    if not self._stopping.is_set():
                        self._fail(self._died(worker))
                    return
                if slot == READY:
                    if error is not None:
                        self._fail(error)
                        return
                    ready += 1
                    if ready == len(self._workers):
                        self.spec.ring_path.unlink(missing_ok=True)
                    continue
                with self._lock:
                    del worker.tasks[slot]
                    worker.since = time.monotonic()
                    request, positions = self._inflight.pop(slot)
                if error is not None:
                    self._fail(error)
                    return
                if request.cancelled:
                    pass
                elif payloads is not None:
                    for position, payload in zip(positions, payloads, strict=True):
                        request.payloads[position] = payload
                elif self._ring is not None:
                    request.out.numpy()[positions] = self._ring[slot, : len(positions)]
                with self._lock:
                    self._free.append(slot)
                    request.chunks_left -= 1
                    if request.chunks_left == 0:
                        request.done.set()
                    self._dispatch()

    def submit(self, rows: np.ndarray) -> _Request:
        """Start reading cache `rows` (or join the request already reading exactly these rows)."""
        key = rows.tobytes()
        with self._lock:
            if key in self._pending:
                return self._pending[key]
            s = self.image_size
            shape = (0, s, s, 3) if self.encoded else (len(rows), s, s, 3)
            out = torch.empty(shape, dtype=torch.uint8, pin_memory=self.pin and not self.encoded)
            order = np.argsort(rows, kind="stable")
            step = self.spec.slot_faces
            chunks = [(order[i : i + step], rows[order[i : i + step]]) for i in range(0, len(rows), step)]
            request = _Request(rows, out, len(chunks), payloads=[None] * len(rows) if self.encoded else [])
            if self._failure is not None:
                request.error = self._failure
                request.done.set()
                return request
            if not chunks:
                request.done.set()
                return request
            while len(self._pending) >= self.depth:
                _, oldest = self._pending.popitem(last=False)
                oldest.cancelled = True
            self._pending[key] = request
            self._backlog.extend((request, positions, part) for positions, part in chunks)
            try:
                self._dispatch()
            except OSError as exc:
                request.error = f"{self.cache_path}: a face reading worker is gone ({one_line(exc)})"
                request.done.set()
        return request

    def _check_stuck(self) -> None:
        """Fail every request, and kill the worker, when a worker has held a chunk for `worker_timeout_s`
        without answering. Checked from the waiting thread, so a collector blocked reading that worker's
        half-sent answer cannot hide it."""
        now = time.monotonic()
        with self._lock:
            stuck = [w for w in self._workers if w.tasks and now - w.since > self.worker_timeout_s]
            if not stuck or self._failure is not None:
                return
            worker = stuck[0]
            rows = np.concatenate(list(worker.tasks.values()))
        state = _process_state(worker.proc.pid)
        what = "reading the JPEG bytes of" if self.encoded else "decoding"
        self._fail(
            f"face reading worker {worker.index} (pid {worker.proc.pid}, {state}) gave no answer for "
            f"{now - worker.since:.0f} s while {what} {len(rows)} faces (cache rows {rows.min()} to "
            f"{rows.max()}); it was killed (data.worker_timeout_s = {self.worker_timeout_s:g})"
        )
        worker.proc.kill()

    def wait(self, request: _Request) -> torch.Tensor:
        """The request's faces once every chunk is in; FacetoolError when a worker failed or got stuck."""
        while not request.done.wait(0.5):
            self._check_stuck()
            if self._collector is None or not self._collector.is_alive():
                self._fail(self._failure or "the face reader stopped")
                request.error = request.error or self._failure
                request.done.set()
        with self._lock:
            self._pending.pop(request.rows.tobytes(), None)
        if request.error is not None:
            raise FacetoolError(request.error)
        return request.out

    def _stop(self) -> None:
        """Stop the workers (asking first, then killing), reap them, free the ring; runs once."""
        self._stopping.set()
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            try:
                worker.proc.wait(_JOIN_SECONDS)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            worker.conn.close()
        if self._collector is not None and self._collector is not threading.current_thread():
            self._collector.join(_JOIN_SECONDS)
        self.spec.ring_path.unlink(missing_ok=True)
        self._ring = None
        with contextlib.suppress(BufferError):
            self._map.close()

    def shutdown(self) -> None:
        self._finalizer()


class StreamedSource(FaceSource):
    """Faces read per request by a `WorkerPool`; nothing but labels and row maps is held between rounds."""

    def __init__(
        self,
        pool: WorkerPool,
        cache_rows: np.ndarray,
        labels: np.ndarray,
        identities: list[str],
        image_size: int,
    ) -> None:
        super().__init__(pool, cache_rows, labels, identities, image_size)
        self.pool = pool

    def _view(self, keep: np.ndarray, labels: np.ndarray, identities: list[str]) -> StreamedSource:
        return StreamedSource(self.pool, self.cache_rows[keep], labels, identities, self.image_size)

    def prefetch(self, rows: np.ndarray) -> None:
        self.pool.submit(self.cache_rows[self._check_rows(rows)])

    def fetch(self, rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
        request = self.pool.submit(self.cache_rows[self._check_rows(rows)])
        faces = self.pool.wait(request)
        if self.pool.encoded:
            try:
                faces = decode_payloads(request.payloads, self.image_size, device)  # type: ignore[arg-type]
            except FacetoolError as exc:
                raise FacetoolError(f"{self.cache_path}: {exc}") from None
        return to_device(faces, device)
