"""trtexec-style timing: warm-up, then enough runs; mean, median and percentiles; CUDA events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

PERCENTILES = (90, 95, 99)


def latency_stats(values_ms: list[float]) -> dict[str, float]:
    """count, mean, median, p90/p95/p99, min, max and std of latencies in milliseconds."""
    if not values_ms:
        raise ValueError("no measurements")
    values = np.asarray(values_ms, dtype=np.float64)
    stats = {"count": int(values.size), "mean": float(values.mean()),
             "median": float(np.median(values))}
    stats.update({f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES})
    stats.update({"min": float(values.min()), "max": float(values.max()),
                  "std": float(values.std())})
    return stats


def timed_loop(step: Callable[[], float], warmup_s: float, duration_s: float,
               min_iterations: int) -> list[float]:
    """Runs ``step`` (which returns one latency in ms) for ``warmup_s`` unrecorded, then until
    at least ``min_iterations`` runs and ``duration_s`` seconds; returns the latencies."""
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        step()
    values: list[float] = []
    start = time.perf_counter()
    while len(values) < min_iterations or time.perf_counter() - start < duration_s:
        values.append(step())
    return values


def wall_ms(work: Callable[[], Any]) -> float:
    """Host wall time of ``work()`` in ms."""
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1e3


class EventTimer:
    """GPU time of work enqueued on a back-end's stream, with two CUDA events."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.start, self.end = backend.create_event(), backend.create_event()

    def __call__(self, enqueue: Callable[[], None]) -> float:
        """Records, enqueues, records, waits; returns the milliseconds between the events."""
        self.backend.record_event(self.start)
        enqueue()
        self.backend.record_event(self.end)
        self.backend.synchronize_event(self.end)
        return self.backend.elapsed_ms(self.start, self.end)

    def close(self) -> None:
        self.backend.destroy_event(self.start)
        self.backend.destroy_event(self.end)
