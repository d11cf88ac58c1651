"""The decode processes: one pool per program, every process up before the first batch."""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import multiprocessing.queues
import os
import queue
import time
from concurrent.futures import Future, ProcessPoolExecutor

# What the processes run (Pillow, NumPy): a process imports it with this module, before it
# reports ready, so that a folder's first batch does not wait for the imports.
from tfod_trt.io.resize import load_preprocessed  # noqa: F401
from tfod_trt.stopping import ignore_stop_signals, shut_down_on_stop, signals_held

log = logging.getLogger(__name__)


PROCESS_START_TIMEOUT_S = 120
# Decode workers of a folder run by default: the cores, at most 16.
DEFAULT_WORKERS = min(16, os.cpu_count() or 1)


def _report_ready(ready: multiprocessing.queues.Queue) -> None:
    """A decode process's initializer: runs once its imports are done. The program stops its
    processes itself: they ignore stop signals."""
    ignore_stop_signals()
    ready.put(os.getpid())


def _wait_until_up(started: list[Future], ready: multiprocessing.queues.Queue) -> None:
    """Waits for one ``ready`` message per task in ``started`` (one task per process); a
    failed task (processes that died starting: BrokenProcessPool) is raised at once."""
    deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
    for _ in started:
        while True:
            try:
                ready.get(timeout=0.1)
                break
            except queue.Empty:
                for future in started:
                    if future.done():
                        future.result()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not up after {PROCESS_START_TIMEOUT_S} s") from None


@functools.cache
def decode_processes(workers: int) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` decode processes, started once per program and shared by every
    batcher that asks for processes; returns once every one is up (starting them costs about
    a second). None, with a warning, where they cannot start (e.g. a program read from
    standard input, which spawned processes cannot re-import): the batchers then decode on
    threads."""
    # spawn, not fork: the parent may hold CUDA contexts and threads, which fork does not copy
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_report_ready,
                               initargs=(ready,))
    shut_down_on_stop(pool)
    try:
        # a process starts for each task while none is idle, so one task each starts them
        # all (each with SIGINT and SIGTERM held until its initializer); waiting for every
        # one keeps a folder's first batches from being read by the first alone while the
        # others still import (measured: the reader's first pass after a short warm-up ran
        # 25-45% slower; docs/results/2026-11-25-first-pass)
        with signals_held():
            started = [pool.submit(os.getpid) for _ in range(workers)]
        _wait_until_up(started, ready)
    except Exception as err:  # BrokenProcessPool, a timeout, an OS limit
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("decode processes could not start (%s); decoding on threads instead",
                    str(err) or type(err).__name__)
        return None
    atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool
