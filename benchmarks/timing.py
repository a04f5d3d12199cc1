"""Wall-clock timing shared by the benchmark scripts: one warm-up, then each call timed with the device synced."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def call_times(fn: Callable[[], object], runs: int, device: torch.device) -> list[float]:
    """Seconds of each of `runs` calls of `fn`, after one warm-up call; CUDA work is waited for."""
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times
