"""The pipelined folder run: decoding, batch assembly into the runner's input buffers, inference
and result conversion overlap; same results and order as the serial loop."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tfod_trt.detect.batch import Runner, box_frame, class_offset_of, true_image_shape_feed
from tfod_trt.detect.results import ImageResult, batch_results
from tfod_trt.io.batcher import Batch, ImageBatcher

if TYPE_CHECKING:
    from tfod_trt.io.nvjpeg import GpuStage

# ---------------------------------------------------------------------------------------------
# The pipelined folder path: decoding on the batcher's worker threads, batches assembled by a
# producer thread straight into one of `depth` (pinned) input buffers, the runner working on
# one batch while the next is prepared, and results handed on in order.


class BatchPipeline(Protocol):
    """``depth`` input buffers; ``submit(slot)`` starts a batch, ``wait(slot)`` returns its
    outputs. TrtRunner.pipeline gives the GPU one (trt_runner.TrtPipeline)."""

    depth: int

    def input_buffer(self, slot: int) -> np.ndarray: ...

    def submit(self, slot: int, true_image_shape: np.ndarray | None = None) -> None: ...

    def wait(self, slot: int) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class HostPipeline:
    """A BatchPipeline for runners without one (ReferenceRunner): NumPy buffers, and
    ``runner.infer`` on one background thread, so that it too overlaps the next batch's
    preparation."""

    def __init__(self, runner: Runner, shape: tuple[int, ...], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"a pipeline needs at least 1 buffer set, got {depth}")
        self.runner = runner
        self.depth = depth
        self._buffers = [np.zeros(shape, np.float32) for _ in range(depth)]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="host-pipeline")
        self._running: dict[int, Future] = {}

    def input_buffer(self, slot: int) -> np.ndarray:
        return self._buffers[slot]

    def submit(self, slot: int, true_image_shape: np.ndarray | None = None) -> None:
        if slot in self._running:
            raise RuntimeError(f"slot {slot} is still in flight")
        extra = () if true_image_shape is None else (true_image_shape,)
        self._running[slot] = self._pool.submit(self.runner.infer, self._buffers[slot], *extra)

    def wait(self, slot: int) -> dict[str, np.ndarray]:
        return self._running.pop(slot).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_pipeline(runner: Runner, shape: tuple[int, ...], depth: int = 2,
                  host_input: bool = True) -> BatchPipeline:
    """The runner's own pipeline (TrtRunner: pinned buffers, overlapped copies; without
    ``host_input`` it takes the image on the device) or a HostPipeline."""
    own = getattr(runner, "pipeline", None)
    if callable(own):
        return own(shape, depth, host_input=host_input)
    return HostPipeline(runner, shape, depth)


# Batches enqueued on the runner at once, where the pipeline has the buffers: one running and
# one behind it, so that the engine has work while the consumer converts results (3 was no
# faster on an H100: docs/results/2026-11-25-nvjpeg-stage-probes)
IN_FLIGHT = 2


def pipeline_depth(batcher: ImageBatcher, depth: int) -> int:
    """The buffer sets :func:`detect_folder_pipelined` uses: ``depth``, raised for a batcher
    that decodes into them (gpu_decode's ``decoding_ahead``) to those plus IN_FLIGHT."""
    ahead = getattr(batcher, "decoding_ahead", None)
    return depth if ahead is None else max(depth, ahead + IN_FLIGHT)


_END = object()


class _Stopped(Exception):
    """The consumer went away: the producer stops."""


class _Producer:
    """The producer thread: assembles the batcher's batches into free buffer slots and puts
    ``(slot, batch)`` (with a stage: ``(slot, Future of the batch)``) on ``ready``, then
    _END; an exception it meets goes on ``ready`` instead, for the consumer to raise."""

    def __init__(self, batcher: ImageBatcher, pipeline: BatchPipeline, stage: GpuStage | None,
                 depth: int) -> None:
        self._batcher, self._pipeline, self._stage = batcher, pipeline, stage
        self.free: queue.Queue[int] = queue.Queue()
        for slot in range(depth):
            self.free.put(slot)
        self.ready: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._taken: deque[int] = deque()
        self._thread = threading.Thread(target=self._produce, name="infer-producer",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and waits for it (it writes into the buffers: it must be gone
        before they are freed)."""
        self._stop.set()
        self._thread.join()

    def _allocate(self) -> np.ndarray | None:
        """The batcher's allocator: the next free slot's input buffer (None with a stage,
        which writes the slot's device input itself); raises _Stopped once stopped."""
        while True:
            try:
                slot = self.free.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None
                continue
            self._taken.append(slot)
            return self._pipeline.input_buffer(slot) if self._stage is None else None

    def _produce(self) -> None:
        """The thread's loop."""
        try:
            for batch in self._batcher.batches(self._allocate):
                slot = self._taken.popleft()
                if self._stage is not None:  # decoded and resized on the GPU: a Future
                    batch = self._stage.start(slot, batch)
                self.ready.put((slot, batch))
                if self._stop.is_set():
                    return
            self.ready.put(_END)
        except _Stopped:
            pass
        except BaseException as err:  # handed to the consumer, raised there
            self.ready.put(err)


class _Submitter:
    """The consumer's side of the runner: takes the producer's batches off ``ready`` and
    submits them, keeping up to IN_FLIGHT (at most ``depth``) in flight, in order."""

    def __init__(self, runner: Runner, pipeline: BatchPipeline, stage: GpuStage | None,
                 producer: _Producer, depth: int) -> None:
        self._runner, self._pipeline, self._stage = runner, pipeline, stage
        self._free, self._ready = producer.free, producer.ready
        self._limit = min(depth, IN_FLIGHT)
        self.in_flight: deque[tuple[int, Batch]] = deque()
        # taken from `ready`, not submitted: its decoding is not done
        self._waiting: deque = deque()
        self.finished = False

    def busy(self) -> bool:
        """Batches in flight, or more to come."""
        return bool(self.in_flight) or not self.finished

    def submit_ready(self, block: bool) -> None:
        """Submits the next batches until IN_FLIGHT (at most ``depth``) are in flight or the
        folder is done; waits for them only when ``block``."""
        while not self.finished and len(self.in_flight) < self._limit:
            if not self._waiting:
                try:
                    self._waiting.append(self._ready.get(block=block))
                except queue.Empty:
                    return
            item = self._waiting[0]
            if isinstance(item, BaseException):
                raise item
            if item is not _END:
                slot, batch = item
                if isinstance(batch, Future):  # decoded and resized on the GPU
                    if not (block or batch.done()):
                        return
                    batch = batch.result()
                self._submit(slot, batch)
            self.finished = item is _END
            self._waiting.popleft()

    def _submit(self, slot: int, batch: Batch) -> None:
        """Enqueues one batch on the pipeline, or frees its slot when it holds no image."""
        if batch.count:
            feed = true_image_shape_feed(self._runner, batch)
            if self._stage is None:
                self._pipeline.submit(slot, feed)
            else:  # the stage writes the image input on the device
                self._stage.order_engine(slot)
                self._pipeline.submit(slot, feed, input_on_device=True)
            self.in_flight.append((slot, batch))
        else:  # every image of it unreadable
            self._free.put(slot)

    def collect(self) -> tuple[dict[str, np.ndarray], Batch]:
        """Waits for the oldest batch in flight; returns its outputs and the batch, its slot
        freed for the producer."""
        slot, batch = self.in_flight.popleft()
        outputs = self._pipeline.wait(slot)
        self._free.put(slot)
        return outputs, batch


def _open_pipeline(runner: Runner, batcher: ImageBatcher,
                   depth: int) -> tuple[BatchPipeline, GpuStage | None]:
    """The runner's pipeline and, for a batcher that decodes on the GPU, its stage (the
    pipeline closed again when the stage cannot open)."""
    open_stage = getattr(batcher, "open_stage", None)  # gpu_decode: decode on the GPU
    pipeline = make_pipeline(runner, batcher.shape, depth, host_input=open_stage is None)
    try:
        stage = open_stage(pipeline) if open_stage is not None else None
    except BaseException:
        pipeline.close()
        raise
    return pipeline, stage


def _close(producer: _Producer, stage: GpuStage | None, pipeline: BatchPipeline) -> None:
    """Stops the producer, then closes the stage and the pipeline (the pipeline even when
    closing the stage fails)."""
    producer.stop()
    try:
        if stage is not None:
            stage.close()
    finally:
        pipeline.close()


def detect_folder_pipelined(
    runner: Runner, batcher: ImageBatcher, score_threshold: float = 0.0,
    class_offset: int | None = None, depth: int = 2,
) -> Iterator[ImageResult]:
    """:func:`detect_folder` (same results, same order) with the batch preparation, the
    runner and the consumer overlapping: a producer thread assembles batches (images decoded
    and resized on the batcher's worker threads) into the pipeline's ``depth`` buffers, this
    thread keeps up to IN_FLIGHT batches enqueued: it collects the oldest, submits the next
    ready batch and only then turns the collected outputs into results (the engine is not
    left waiting on that conversion, which under the GIL took 1.5-2 ms per batch of 16 on the
    H100 machine's CPU, more than the engine's 1.5 ms).
    With a gpu_decode.GpuImageBatcher the batches hold encoded photos, and the producer hands
    each to its stage, which decodes and resizes it on the GPU on a thread of its own (ctypes
    driver calls, any thread; ``depth`` is raised by :func:`pipeline_depth`).
    Runner calls all happen on the calling thread (pycuda needs that)."""
    class_offset = class_offset_of(runner, class_offset)
    frame = box_frame(runner)
    depth = pipeline_depth(batcher, depth)
    pipeline, stage = _open_pipeline(runner, batcher, depth)
    producer = _Producer(batcher, pipeline, stage, depth)
    submitter = _Submitter(runner, pipeline, stage, producer, depth)
    producer.start()
    try:
        while submitter.busy():
            submitter.submit_ready(block=True)
            if submitter.in_flight:
                outputs, batch = submitter.collect()
                submitter.submit_ready(block=False)  # the engine gets the next batch before these
                yield from batch_results(outputs, batch, class_offset, score_threshold, frame)
    finally:
        _close(producer, stage, pipeline)
