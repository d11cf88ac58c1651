"""Stopping a run on SIGINT or SIGTERM: the signal becomes an exception in the main thread, so
that every ``finally`` runs (threads joined, temporary files removed), then the child processes
are ended and the script exits with 128 + the signal number."""

from __future__ import annotations

import gc
import multiprocessing
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long child processes get to end on their own before they are killed.
CHILD_GRACE_S = 5.0


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, as KeyboardInterrupt is: ``except Exception``
    does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _State:
    """What the handler needs: deferral depth and the signal waiting for it (main thread only),
    and whether a stop is under way already."""

    deferring = 0
    pending: int | None = None
    stopping = False


def _on_signal(signum: int, _frame: object) -> None:
    if _State.stopping:  # the first stop is cleaning up: let it finish
        return
    if _State.deferring:
        _State.pending = signum
        return
    _State.stopping = True
    raise Stopped(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_deferred() -> Iterator[None]:
    """A block that a stop signal does not cut in two: a signal arriving inside it is raised
    when it ends. Only the main thread is ever interrupted, so elsewhere it changes nothing."""
    if not _in_main_thread():
        yield
        return
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring and _State.pending is not None and not _State.stopping:
            signum, _State.pending = _State.pending, None
            _State.stopping = True
            raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`Stopped` in the main thread (the previous
    handlers come back after)."""
    if not _in_main_thread():  # signal handlers can only be set from the main thread
        yield
        return
    previous = {signum: signal.signal(signum, _on_signal) for signum in STOP_SIGNALS}
    _State.stopping, _State.pending = False, None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back from the calling thread (they wait, not lost; in the main
    thread a stop is raised at the block's end). Processes started inside begin with them held
    too, until :func:`ignore_stop_signals` (their initializer)."""
    if not hasattr(signal, "pthread_sigmask"):
        with stop_deferred():
            yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        with stop_deferred():
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """For a worker process started in :func:`signals_held`: SIGINT and SIGTERM ignored from
    now on. A Ctrl-C in the terminal reaches the whole process group; only the program stops
    on it, and ends its workers when their work in hand is done (one killed while it sends a
    result would leave its pool waiting for the rest of the message)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


_POOLS: weakref.WeakSet[Executor] = weakref.WeakSet()


def shut_down_on_stop(pool: Executor) -> None:
    """Has a stop shut ``pool`` down (tasks not started cancelled) before the child processes
    are waited for."""
    _POOLS.add(pool)


def end_child_processes(grace_s: float = CHILD_GRACE_S) -> None:
    """Ends every process this one started through multiprocessing: the pools of
    :func:`shut_down_on_stop` are shut down, then all children get ``grace_s`` to exit before
    they are killed. multiprocessing's resource tracker needs nothing: it ends by itself once
    this process and its children are gone."""
    for pool in list(_POOLS):
        pool.shutdown(wait=False, cancel_futures=True)
    children = multiprocessing.active_children()
    deadline = time.monotonic() + grace_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
            child.join()


def run_stoppable(prog: str, work: Callable[[], int]) -> int:
    """``work()``'s exit code; on SIGINT or SIGTERM, once its clean-up has run, the child
    processes are ended, ``PROG: stopped by SIGTERM`` goes to stderr and the code is
    128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell reports it."""
    with stop_on_signals():
        try:
            return work()
        except Stopped as stop:
            signum, message = stop.signum, str(stop)
        # out of the except block the run's frames are released, and collected (classes made
        # in them are in reference cycles): what they held (a progress bar, a generator's
        # clean-up) is closed before the last line
        gc.collect()
        end_child_processes()
        print(f"{prog}: {message}", file=sys.stderr)
        return 128 + signum
