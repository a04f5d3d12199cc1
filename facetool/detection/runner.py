"""The parallel detection run: worker processes detect and crop, the parent alone writes the cache.

Each worker has its own network and one OpenCV thread; it takes batches of scanned images from a task
queue and returns their finished records. The parent commits every few hundred images or seconds, so a
killed run loses at most that much, and a rerun skips everything the cache already holds.
Ctrl-C (or SIGTERM) commits what is done, stops the workers and raises DetectInterrupted (a KeyboardInterrupt).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from facetool import __version__
from facetool.cache import CacheWriter, FaceRecord, Failure, open_cache
from facetool.cache.origin import folder_conflict, recorded, setting_differences
from facetool.config.detect import DetectConfig
from facetool.detection.align import TEMPLATE_NAME, has_landmarks, template
from facetool.detection.detectors import Detector, check_alignment, create_detector
from facetool.detection.faces import process_batch
from facetool.detection.scan import ImageEntry, ScanResult, scan_images, take_shard
from facetool.errors import CacheError, FacetoolError, UsageError
from facetool.files import check_output_not_input

_POLL_SECONDS = 0.25
BATCH_IMAGES = 16
"""Images per worker task: small enough to spread a small folder over the workers, large enough that the
queues cost nothing."""
COMMIT_IMAGES = 64
COMMIT_SECONDS = 5.0
"""The cache commits at least every COMMIT_IMAGES images or COMMIT_SECONDS seconds (one journal segment, one
fsync): what a SIGKILL or a power cut can lose. A Ctrl-C or SIGTERM commits every finished image anyway."""
# fork starts a worker in milliseconds; spawn would re-import the program's __main__ (the whole CLI, torch
# included) in every worker. Workers touch nothing but OpenCV, PIL and their queues, so fork is safe here.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


@dataclass(frozen=True)
class DetectProgress:
    """Counts so far in this run, passed to the progress callback after every batch."""

    total: int
    done: int
    faces: int
    fallbacks: int
    failures: int


@dataclass
class DetectSummary:
    """What one `detect_directory` call did. Counts other than `images`/`skipped` are for this run only."""

    data_dir: str
    cache_path: str
    model: str
    workers: int
    images: int = 0
    skipped: int = 0
    removed: list[str] = field(default_factory=list)  # cache entries whose image left the folder
    kept_unreadable: int = 0  # cache entries kept because their folder could not be read
    changed: int = 0  # cache entries whose image changed since: dropped and redone
    retried: int = 0  # images that failed before and were tried again
    processed: int = 0
    faces: int = 0
    fallbacks: int = 0
    failures: int = 0
    unaligned: int = 0  # faces five-point alignment could not place (no landmarks): box crops instead
    aligning: bool = False
    empty_identities: list[str] = field(default_factory=list)
    problems: list[Failure] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        """Images processed per second of wall time (start-up included)."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def count(self, item: FaceRecord | Failure) -> None:
        """Add one finished image to the counts."""
        self.processed += 1
        if isinstance(item, Failure):
            self.failures += 1
            self.failed.append(item)
        elif item.detected:
            self.faces += 1
            self.unaligned += self.aligning and not has_landmarks(item.landmarks)
        else:
            self.fallbacks += 1

    def progress(self, total: int) -> DetectProgress:
        return DetectProgress(total, self.processed, self.faces, self.fallbacks, self.failures)


class DetectInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; everything finished before it was committed. Carries the summary."""

    def __init__(self, summary: DetectSummary) -> None:
        super().__init__("detection interrupted")
        self.summary = summary


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _worker_main(config: DetectConfig, data_dir: str, tasks: Any, results: Any) -> None:
    """Worker process: own detector, one OpenCV thread; exits on a None task or when the parent is gone."""
    for sig in _STOP_SIGNALS:  # a signal to the whole process group is for the parent to handle
        signal.signal(sig, signal.SIG_IGN)
    cv2.setNumThreads(1)
    try:
        check_alignment(config).prepare_worker()
        detector = create_detector(config)
    except FacetoolError as exc:
        results.put(("error", str(exc)))
        return
    parent = mp.parent_process()
    root = Path(data_dir)
    while True:
        try:
            batch = tasks.get(timeout=1.0)
        except queue.Empty:
            batch = ()
        if parent is not None and not parent.is_alive():
            results.cancel_join_thread()  # nobody will read what is left: do not wait to flush it
            return
        if batch is None:
            return
        if not batch:
            continue
        try:
            results.put(("batch", process_batch(batch, root, detector, config)))
        except FacetoolError as exc:
            results.put(("error", str(exc)))
            return


@contextmanager
def _stop_signals_set(flag: threading.Event) -> Iterator[None]:
    """While active, SIGINT and SIGTERM set `flag` instead of raising, so the run stops between batches."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: flag.set()) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _without_opencv_threads() -> Iterator[None]:
    """Fork with OpenCV's thread pool shut down, then bring it back in this process.

    A child forked while the parent holds a live OpenCV pool inherits its locks but not its threads, and its first
    `cv2.setNumThreads` waits forever on them (seen when the parent had run OpenCV code earlier, as a test
    suite or a notebook does).
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


class _Pool:
    """The worker processes and their two queues."""

    def __init__(self, config: DetectConfig, data_dir: Path, workers: int) -> None:
        context = mp.get_context(_START_METHOD)
        self.tasks = context.Queue()
        self.results = context.Queue()
        self.processes = [
            context.Process(
                target=_worker_main,
                args=(config, str(data_dir), self.tasks, self.results),
                name=f"facetool-detect-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        with _without_opencv_threads():
            for process in self.processes:
                process.start()

    def submit(self, batches: list[list[ImageEntry]]) -> None:
        for batch in batches:
            self.tasks.put(batch)
        for _ in self.processes:
            self.tasks.put(None)

    def next_result(self) -> list[FaceRecord | Failure] | None:
        """The next finished batch, or None when nothing arrived within the poll interval."""
        try:
            kind, payload = self.results.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            dead = [p for p in self.processes if p.exitcode not in (None, 0)]
            if dead:
                raise FacetoolError(
                    f"detector worker {dead[0].name} died (exit code {dead[0].exitcode}); "
                    "finished images are committed, rerun to resume"
                ) from None
            if all(p.exitcode == 0 for p in self.processes):
                raise FacetoolError(
                    "detector workers stopped before all images were processed; rerun to resume"
                ) from None
            return None
        if kind == "error":
            raise FacetoolError(payload)
        return payload

    def close(self) -> None:
        """Stop the workers (immediately if they are still busy) and release the queues."""
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            process.join(timeout=10)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


def _batches(entries: list[ImageEntry], size: int) -> list[list[ImageEntry]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


def _cache_meta(detector: Detector, config: DetectConfig, data_dir: Path) -> dict[str, Any]:
    aligned = config.align == "five-point"
    return {
        "producer": f"facetool {__version__} detect",
        "data_dir": str(data_dir.resolve()),
        "detector": detector.record(),
        "align": config.align,
        "template": (
            {"name": TEMPLATE_NAME, "points": template(config.image_size).round(4).tolist()}
            if aligned
            else None
        ),
        "threshold": config.threshold,
        "select": config.select,
        "margin": config.margin,
        "image_size": config.image_size,
        "max_pixels": config.max_pixels,
        "shard": config.shard,
    }


def _check_resumable(cache_path: Path, meta: dict[str, Any]) -> None:
    """Refuse to resume a cache of another folder or shard (the rerun would drop its faces as gone), or whose
    faces were cropped with other settings or another detector (one cache, one crop geometry)."""
    if not cache_path.is_file():
        return
    try:
        with open_cache(cache_path) as cache:
            faces, entries, stored = len(cache), len(cache) + len(cache.failures), recorded(cache.meta)
    except CacheError:
        return  # the writer reports an unusable cache with its own message
    if not entries:
        return
    conflict = folder_conflict(stored, meta["data_dir"], meta["shard"])
    if conflict:
        raise UsageError(f"{cache_path}: {conflict}")
    differ = setting_differences(stored, meta) if faces else []
    if differ:
        raise UsageError(
            f"{cache_path}: cropped with other settings: {'; '.join(differ)}; "
            "use the same settings to resume, or another output file"
        )


def detect_directory(
    data_dir: str | Path,
    cache_path: str | Path,
    config: DetectConfig | None = None,
    progress: Callable[[DetectProgress], None] | None = None,
) -> DetectSummary:
    """Detect and crop the face of every image under `data_dir` into the cache at `cache_path`.

    Images whose (path, size, mtime_ns) the cache already holds are skipped, so a rerun resumes.
    `progress` is called with a DetectProgress before the first and after every batch.
    Raises DetectInterrupted (carrying the summary) on Ctrl-C or SIGTERM after committing the finished images.
    """
    config = config or DetectConfig()
    data_dir = Path(data_dir)
    started = time.monotonic()
    check_output_not_input(cache_path, [data_dir])
    scan = scan_images(data_dir)
    if config.shard_parts is not None:
        scan = take_shard(scan, *config.shard_parts)
    if not scan.images and not scan.problems:
        raise FacetoolError(f"{data_dir}: no images found (expected DATA_DIR/<identity>/<image>)")
    detector = create_detector(config)
    workers = min(config.workers or usable_cores(), max(1, -(-len(scan.images) // BATCH_IMAGES)))
    workers = min(workers, detector.max_workers or workers)
    summary = DetectSummary(
        str(data_dir),
        str(cache_path),
        detector.summary(),
        workers,
        aligning=config.align == "five-point",
        images=len(scan.images),
        empty_identities=list(scan.empty_identities),
        problems=list(scan.problems),
    )
    stop = threading.Event()
    meta = _cache_meta(detector, config, data_dir)
    del detector  # each worker builds its own
    _check_resumable(Path(cache_path), meta)
    with _stop_signals_set(stop):
        pool = _Pool(config, data_dir, workers)  # before the cache is opened: no inherited lock
        try:
            with CacheWriter(cache_path, config.image_size, config.encoding, meta) as writer:
                _run(pool, scan, config, writer, summary, progress, stop)
        finally:
            pool.close()
            summary.seconds = time.monotonic() - started
    if stop.is_set():
        summary.interrupted = True
        raise DetectInterrupted(summary)
    return summary


def _sync_with_folder(scan: ScanResult, writer: CacheWriter, summary: DetectSummary) -> None:
    """Remove the entries of deleted, moved or changed images and of earlier failures; record scan problems.

    Entries at or under a path the scan could not read (a folder without permission, a link to a disk not
    mounted) are kept: their images are unseen, not gone; the next run that can read them decides.
    """
    present = {e.path: (e.size, e.mtime_ns) for e in scan.images}
    unreadable = {p.path for p in scan.problems}
    for path, (size, mtime, is_face) in sorted(writer.known_entries().items()):
        if _under(path, unreadable):
            summary.kept_unreadable += path not in unreadable
            continue
        if path not in present:
            summary.removed.append(path)
        elif present[path] != (size, mtime):
            summary.changed += 1
        elif is_face:
            continue
        else:
            summary.retried += 1
        writer.remove(path)
    for problem in scan.problems:
        writer.add(problem)


def _under(path: str, folders: set[str]) -> bool:
    """Whether `path` is one of `folders` or lies inside one of them."""
    parts = path.split("/")
    return any("/".join(parts[:k]) in folders for k in range(1, len(parts) + 1))


def _run(
    pool: _Pool,
    scan: ScanResult,
    config: DetectConfig,
    writer: CacheWriter,
    summary: DetectSummary,
    progress: Callable[[DetectProgress], None] | None,
    stop: threading.Event,
) -> None:
    """Make the cache match the folder, then hand the images it lacks to the workers.

    Entries of images no longer in the folder are removed, those of changed images dropped and redone, and
    earlier failures retried; records are added, counted and committed as they come.
    """
    _sync_with_folder(scan, writer, summary)
    known = writer.known_entries()
    todo = [e for e in scan.images if known.get(e.path) != (e.size, e.mtime_ns, True)]
    summary.skipped = len(scan.images) - len(todo)
    writer.commit()
    if progress is not None:
        progress(summary.progress(len(todo)))
    batches = _batches(todo, BATCH_IMAGES)
    pool.submit(batches)
    remaining, uncommitted, last_commit = len(batches), 0, time.monotonic()
    try:
        while remaining and not stop.is_set():
            items = pool.next_result()
            if items is None:
                continue
            remaining -= 1
            for item in items:
                writer.add(item)
                summary.count(item)
            uncommitted += len(items)
            now = time.monotonic()
            if uncommitted >= COMMIT_IMAGES or now - last_commit >= COMMIT_SECONDS:
                writer.commit()
                last_commit, uncommitted = now, 0
            if progress is not None:
                progress(summary.progress(len(todo)))
    except BaseException:
        with suppress(Exception):  # keep what is finished; the original error is the one to report
            writer.commit()
        raise
    writer.commit()
