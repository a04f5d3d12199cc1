"""Opening a face cache as a `FaceSource`: preloaded when the decoded faces fit, streamed otherwise.

`open_face_source` reads labels and identities from the cache metadata (no face is decoded), then picks by
the decoded size (N x S x S x 3 bytes) against the memory available where the faces would live: free
accelerator memory on CUDA (`torch.cuda.mem_get_info`), else MemAvailable of /proc/meminfo. Faces are
preloaded when they take at most `MEMORY_SHARE` of it. The choice comes back with one line for the log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from facetool.cache import open_cache
from facetool.config.train import WORKER_TIMEOUT_S
from facetool.data.jpeg import Decode, choose_decoder
from facetool.data.source import CacheReader, FaceSource, PreloadedSource
from facetool.data.stream import StreamedSource, WorkerPool
from facetool.errors import FacetoolError, UsageError

MEMORY_SHARE = 0.5
MAX_DEFAULT_WORKERS = 8
Mode = Literal["auto", "preload", "stream"]


@dataclass(frozen=True)
class SourceChoice:
    """How a source reads its faces: `kind` is "preload-device", "preload-host" or "stream"; `reason` says why."""

    kind: str
    reason: str


def default_workers() -> int:
    """Worker processes for streaming: the usable cores but one (for the training process), 1 to 8."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, usable - 1))


def host_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable of the host in bytes, None when the kernel does not say."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def device_available_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device, None for any other device."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def gib(nbytes: int) -> str:
    """`nbytes` in GiB, two decimals, for log lines."""
    return f"{nbytes / (1 << 30):.2f} GiB"


def choose_kind(
    mode: Mode, device: torch.device, decoded: int, device_free: int | None, host_free: int | None
) -> SourceChoice:
    """The way to read `decoded` bytes of faces for training on `device`, and why."""
    if mode not in ("auto", "preload", "stream"):
        raise UsageError(f"data source mode {mode!r}: expected auto, preload or stream")
    size = f"{gib(decoded)} of decoded faces"
    fits_device = device_free is not None and decoded <= MEMORY_SHARE * device_free
    fits_host = host_free is not None and decoded <= MEMORY_SHARE * host_free
    if mode == "stream":
        return SourceChoice("stream", f"streaming {size}: asked for")
    if mode == "preload":
        kind = "preload-device" if device.type == "cuda" and fits_device else "preload-host"
        return SourceChoice(kind, f"preloading {size}: asked for")
    if device.type == "cuda" and fits_device:
        return SourceChoice(
            "preload-device",
            f"preloading {size} on {device}: they fit in half of its {gib(device_free)} free",
        )  # type: ignore[arg-type]
    if fits_host:
        return SourceChoice(
            "preload-host",
            f"preloading {size} in host memory: they fit in half of the {gib(host_free)} available",
        )  # type: ignore[arg-type]
    known = "unknown" if host_free is None else gib(host_free)
    return SourceChoice("stream", f"streaming {size}: more than half of the {known} of available host memory")


def open_face_source(
    cache_path: Path | str,
    *,
    mode: Mode = "auto",
    device: torch.device | str = "cpu",
    workers: int | None = None,
    slot_faces: int = 64,
    decode: Decode = "auto",
    worker_timeout_s: float = WORKER_TIMEOUT_S,
) -> tuple[FaceSource, SourceChoice]:
    """The cache's faces as a source for training on `device`, and the choice made (see the module doc).

    A preloaded source keeps this opening of the cache (the snapshot its labels come from) and decodes each
    face the first time it is fetched.
    A streamed source decodes JPEG on the device where `choose_decoder` allows (`decode`: auto, workers or
    device); a streaming worker holding a chunk for `worker_timeout_s` without answering stops the reads with
    an error naming it. CacheError from the cache module names a bad file; a cache without faces is a
    FacetoolError.
    """
    cache_path = Path(cache_path)
    device = torch.device(device)
    cache = open_cache(cache_path)
    keep_open = False
    try:
        labels = np.asarray(cache.labels, np.int64)
        identities = list(cache.identities)
        image_size = cache.image_size
        encoding = cache.encoding
        if len(labels) == 0:
            raise FacetoolError(f"{cache_path}: the face cache holds no faces")
        decoded = len(labels) * image_size * image_size * 3
        choice = choose_kind(mode, device, decoded, device_available_bytes(device), host_available_bytes())
        keep_open = choice.kind != "stream"
    finally:
        if not keep_open:
            cache.close()
    rows = np.arange(len(labels), dtype=np.int64)
    if keep_open:
        place_on = device if choice.kind == "preload-device" else torch.device("cpu")
        preloaded = PreloadedSource(
            CacheReader(cache), rows, labels, identities, image_size, place_on, pin=device.type == "cuda"
        )
        return preloaded, choice
    n = workers or default_workers()
    decoder = choose_decoder(decode, device, encoding)
    pool = WorkerPool(
        cache_path,
        labels,
        image_size,
        workers=n,
        slot_faces=slot_faces,
        pin=device.type == "cuda",
        encoded=decoder.on_device,
        worker_timeout_s=worker_timeout_s,
    )
    streamed = StreamedSource(pool, rows, labels, identities, image_size)
    return streamed, SourceChoice(choice.kind, f"{choice.reason}; {n} reading worker(s), {decoder.reason}")
