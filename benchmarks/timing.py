"""Wall-clock timing shared by the benchmark scripts: one warm-up, then each call timed with the device synced;
and `facetool` commands run as a user types them, timed."""

from __future__ import annotations

import subprocess
import sys
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


def facetool(*args: object) -> float:
    """Run `python -m facetool ARGS`; its wall time in seconds (a failure ends the benchmark with its stderr)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"facetool {' '.join(map(str, args))} failed:\n{done.stderr}")
    return time.perf_counter() - start
