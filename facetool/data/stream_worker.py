"""The worker process of a streamed face source: reads and decodes rows of a cache into a shared ring.

Started as `python -m facetool.data.stream_worker FD` (a fresh interpreter that imports no torch and not the
parent's main script, so it starts in a fraction of a second and stays small), it talks to its parent over
the socket FD: first a `WorkerSpec`, then tasks (slot, cache rows) until None or the socket closes (the
parent is gone). It opens the cache read-only once and checks it is the cache the parent opened. Each task's
faces are decoded by `FaceCache.read_faces` in the row order given (sorted by the parent, so reads are
contiguous runs) into ring slot `slot`; the answer is (slot, None, None) or (slot, one-line error, None).
A task (slot, rows, True) asks for the stored JPEG bytes instead (`FaceCache.payloads`), answered as
(slot, None, payloads), for a parent that decodes them on its accelerator.
"""

from __future__ import annotations

import hashlib
import mmap
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

READY = -1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs: the cache and what it must look like, and the ring it writes into."""

    cache_path: Path
    faces: int
    image_size: int
    labels_digest: str
    ring_path: Path
    slots: int
    slot_faces: int


def labels_digest(labels: np.ndarray) -> str:
    """A short fingerprint of a cache's labels, so a worker notices a cache replaced since the parent read it."""
    return hashlib.sha256(np.ascontiguousarray(labels, np.int64).tobytes()).hexdigest()[:16]


def ring_view(buffer: Any, spec: WorkerSpec) -> np.ndarray:
    """The ring as (slots, slot_faces, S, S, 3) uint8 over `buffer`."""
    s = spec.image_size
    shape = (spec.slots, spec.slot_faces, s, s, 3)
    return np.frombuffer(buffer, np.uint8, count=int(np.prod(shape))).reshape(shape)


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    return " ".join(str(exc).split()) or type(exc).__name__


def serve(conn: Connection) -> None:
    """Answer tasks on `conn` until told to stop or the parent goes away."""
    from facetool.cache import open_cache

    spec: WorkerSpec = conn.recv()
    try:
        cache = open_cache(spec.cache_path)
        if (len(cache), cache.image_size, labels_digest(cache.labels)) != (
            spec.faces,
            spec.image_size,
            spec.labels_digest,
        ):
            raise RuntimeError(f"{spec.cache_path}: the face cache changed since it was opened")
        with open(spec.ring_path, "r+b") as handle:
            ring_map = mmap.mmap(handle.fileno(), 0)
    except Exception as exc:  # every failure goes back to the parent as one line
        conn.send((READY, one_line(exc), None))
        return
    ring = ring_view(ring_map, spec)
    conn.send((READY, None, None))
    try:
        while (task := conn.recv()) is not None:
            slot, rows, encoded = task
            try:
                if encoded:
                    conn.send((slot, None, cache.payloads(rows)))
                    continue
                ring[slot, : len(rows)] = cache.read_faces(rows)
                conn.send((slot, None, None))
            except Exception as exc:  # a bad face fails this task only, as one line
                conn.send((slot, one_line(exc), None))
    except (EOFError, OSError):
        pass
    finally:
        del ring
        ring_map.close()
        cache.close()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Connection(int(sys.argv[1])))
