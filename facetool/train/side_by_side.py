"""Several training runs at once, each in its own process: the members of an ensemble on a many-core CPU.

One small network cannot keep many CPU cores busy (a step of tiny-cnn gains 1.6x from a second thread), and
past a point more epochs stop helping; independently seeded models trained side by side, one or a few threads
each, use the same minutes better once their distances are averaged. Each process runs `train` on its own
run folder with `resume="auto"`, so an interrupted set resumes member by member; the first failure is raised
in the caller as the member's own facetool error.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence

from facetool.config.train import TrainConfig
from facetool.train.loop import TrainResult, train

POLL_S = 0.5


def _exit_with(parent: int) -> None:
    """End this process once `parent` is gone (killed, say): a member must not train on, unseen, into a folder
    a rerun will resume. Checkpoints are written atomically, so the last one stays usable."""
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(1)


def _train_member(config: TrainConfig, parent: int) -> TrainResult:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    return train(config, resume="auto")


def train_side_by_side(configs: Sequence[TrainConfig]) -> list[TrainResult]:
    """Train every config at the same time, one spawned process each; their results in the same order.

    The first member to fail stops the others (each keeps its last checkpoint) and its error is raised here;
    so is a Ctrl-C. Members end by themselves when this process is killed.
    """
    if len({str(c.checkpoint_dir) for c in configs}) != len(configs):
        raise ValueError("side-by-side runs need a run folder each")
    pool = multiprocessing.get_context("spawn").Pool(processes=len(configs))
    try:
        pending = [pool.apply_async(_train_member, (config, os.getpid())) for config in configs]
        while not all(p.ready() for p in pending):
            for p in pending:
                if p.ready() and not p.successful():
                    p.get()
            time.sleep(POLL_S)
        results = [p.get() for p in pending]
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return results
