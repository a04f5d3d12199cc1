"""Several training runs at once, each in its own process: the members of an ensemble on a many-core CPU.

One small network cannot keep many CPU cores busy (a step of tiny-cnn gains 1.6x from a second thread), and
past a point more epochs stop helping; independently seeded models trained side by side, one or a few threads
each, use the same minutes better once their distances are averaged. Each process runs `train` on its own
run folder with `resume="auto"`, so an interrupted set resumes member by member; the first failure is raised
in the caller as the member's own facetool error.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from typing import Any

from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError
from facetool.training.loop import TrainResult, train

POLL_S = 0.5


def _exit_with(parent: int) -> None:
    """End this process once `parent` is gone (killed, say): a member must not train on, unseen, into a folder
    a rerun will resume. Checkpoints are written atomically, so the last one stays usable."""
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(1)


def _member(config: TrainConfig, index: int, parent: int, results: Queue[Any]) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        results.put((index, train(config, resume="auto"), None))
    except Exception as exc:
        results.put((index, None, exc))


def train_side_by_side(configs: Sequence[TrainConfig], jobs: int = 0) -> list[TrainResult]:
    """Train every config in its own spawned process, at most `jobs` at a time (0: all at once); their
    results in the same order. A member waiting for a slot starts when one ends.

    The first member to fail stops the others (each keeps its last checkpoint, those not started yet never
    start) and its error is raised here; so is a Ctrl-C. Members end by themselves when this process is killed.
    """
    if len({str(c.checkpoint_dir) for c in configs}) != len(configs):
        raise ValueError("side-by-side runs need a run folder each")
    if jobs < 0:
        raise ValueError(f"jobs must be 0 (all at once) or more, got {jobs}")
    slots = jobs or len(configs)
    context = multiprocessing.get_context("spawn")
    results: Queue[Any] = context.Queue()
    members = [
        context.Process(target=_member, args=(config, i, os.getpid(), results), daemon=True)
        for i, config in enumerate(configs)
    ]
    started = 0
    done: dict[int, TrainResult] = {}
    try:
        while len(done) < len(members):
            while started < len(members) and started - len(done) < slots:
                members[started].start()
                started += 1
            try:
                index, result, error = results.get(timeout=POLL_S)
            except queue.Empty:
                for i in range(started):
                    if i not in done and members[i].exitcode not in (None, 0):
                        raise FacetoolError(
                            f"{configs[i].checkpoint_dir}: the training process ended with exit code "
                            f"{members[i].exitcode} (its train.log says how far it got)"
                        ) from None
                continue
            if error is not None:
                raise error
            done[index] = result
    except BaseException:
        for member in members[:started]:
            if member.is_alive():
                member.terminate()
        raise
    finally:
        for member in members[:started]:
            member.join()
    return [done[i] for i in range(len(members))]


def scheduled_seconds(seconds: Sequence[float], jobs: int = 0) -> float:
    """Wall time of runs taking `seconds` each when started in order, at most `jobs` at a time (0: all at
    once), each as soon as a slot is free: the training time of a side-by-side set, also after a resume."""
    slots = [0.0] * min(jobs or len(seconds), len(seconds))
    for s in seconds:
        heapq.heapreplace(slots, slots[0] + s)
    return max(slots, default=0.0)
