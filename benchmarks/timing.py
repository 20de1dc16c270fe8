"""Timing helper shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one untimed warm-up.

    On CUDA the device is synchronised around each run, so queued kernels are counted.
    """
    fn()  # warm-up (allocator, kernels), not timed
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
