"""Detects objects in images with a converted model: a TensorRT engine (``--engine``) or, with no
TensorRT at all, the ONNX file on the CPU reference runtime (``--onnx``).

    python infer.py -e model.engine -i images/ -o results/ [-l label_map.pbtxt] [-t 0.3]
    python infer.py --onnx model.onnx -i photo.jpg -o results/ --no_pictures

Writes, per image, ``<stem>.txt`` (one tab-separated line per detection, best score first:
``xmin ymin xmax ymax score class``, original-image pixels, 0-based class, as NVIDIA's sample
did) and ``<stem>.png`` (the picture); per run ``detections.json`` (COCO results style).

:func:`make_batcher` and :func:`detect_folder` are the reusable part: feed a runner (anything with
``infer(batch) -> dict``, ``metadata`` and ``input_shape``) and get detections in pixels.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cli import UsageError, run_main
from image_batcher import (
    FIXED_SHAPE,
    Batch,
    ImageBatcher,
    ImageError,
    ImageScale,
    Preprocessor,
    boxes_to_pixels,
    find_images,
    load_image,
)
from labels import label_for, load_labels
from onnx_utils import atomic_write_bytes
from parity import Detections
from visualize import draw_detections

PROG = "infer.py"
DEFAULT_WORKERS = min(16, os.cpu_count() or 1)
log = logging.getLogger("infer")


class Runner(Protocol):
    """ReferenceRunner, TrtRunner: one static-shape batch in, the graph's outputs out."""

    metadata: dict

    @property
    def input_shape(self) -> list: ...

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class ImageResult:
    """One image's detections in original-image pixels, best score first."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float64 [N, 4]: xmin, ymin, xmax, ymax, clipped to the image
    scores: np.ndarray  # float32 [N]
    classes: np.ndarray  # int64 [N], 0-based

    def __len__(self) -> int:
        return len(self.scores)


def to_image_result(
    path: Path, scale: ImageScale, detections: Detections, score_threshold: float,
    box_frame: str = "input",
) -> ImageResult:
    """Maps normalised boxes to pixels and keeps scores >= threshold with a non-zero area."""
    (result,) = to_image_results(
        [path], [scale], detections.boxes.reshape(1, -1, 4), detections.scores.reshape(1, -1),
        detections.classes.reshape(1, -1), np.array([len(detections)]), score_threshold,
        box_frame)
    return result


def to_image_results(
    paths: list[Path], scales: list[ImageScale], boxes: np.ndarray, scores: np.ndarray,
    classes: np.ndarray, counts: np.ndarray, score_threshold: float, box_frame: str = "input",
) -> list[ImageResult]:
    """:func:`to_image_result` for a batch at once: ``boxes`` [B, K, 4] normalised,
    ``scores`` / ``classes`` (0-based) [B, K], of which the first ``counts`` [B] are valid."""
    factors = np.array([scale.pixel_factors(box_frame) for scale in scales]).reshape(-1, 4)
    pixels = boxes_to_pixels(boxes, factors)
    keep = (
        (np.arange(scores.shape[1]) < np.asarray(counts)[:, None])
        & (scores >= score_threshold)
        & (pixels[..., 2] > pixels[..., 0])
        & (pixels[..., 3] > pixels[..., 1])
    )
    # best score first, ties in output order; what is not kept sorts last. NMS outputs come
    # in that order already: then no sort, else one gather for the batch; then a view per
    # image (few NumPy calls: the pipeline's consumer runs this)
    ranked = np.where(keep, scores, -np.inf)
    if (ranked[:, 1:] > ranked[:, :-1]).any():
        order = np.argsort(-ranked, axis=1, kind="stable")
        rows = np.arange(len(order))[:, None]
        pixels, scores, classes = pixels[rows, order], scores[rows, order], classes[rows, order]
    return [ImageResult(path, scale.orig_width, scale.orig_height, pixels[i, :kept],
                        scores[i, :kept], classes[i, :kept])
            for i, (path, scale, kept) in enumerate(zip(paths, scales, keep.sum(axis=1).tolist(),
                                                         strict=True))]


def detect_folder(
    runner: Runner, batcher: ImageBatcher, score_threshold: float = 0.0,
    class_offset: int | None = None,
) -> Iterator[ImageResult]:
    """Runs every batch through ``runner``; yields one result per readable image, in order.

    Unreadable images are left out and listed in ``batcher.skipped``. ``class_offset`` is
    subtracted from the runner's classes to make them 0-based (default: the model metadata's
    ``class_offset``, else 0; TFOD SavedModels need 1).
    """
    class_offset = class_offset_of(runner, class_offset)
    frame = box_frame(runner)
    for batch in batcher:
        yield from batch_results(run_batch(runner, batch), batch, class_offset, score_threshold,
                                 frame)


def true_image_shape_feed(runner: Runner, batch: Batch) -> np.ndarray | None:
    """The batch's true_image_shape input where the runner's graph takes one, else None."""
    return batch.true_image_shape() if getattr(runner, "needs_true_image_shape", False) else None


def run_batch(runner: Runner, batch: Batch) -> dict[str, np.ndarray]:
    """``runner.infer`` on a batch, with its true_image_shape input where the graph has one."""
    feed = true_image_shape_feed(runner, batch)
    return runner.infer(batch.data) if feed is None else runner.infer(batch.data, feed)


def box_frame(runner: Runner) -> str:
    """What the runner's boxes are normalised to: "input" or "true_image" (the metadata)."""
    return (getattr(runner, "metadata", None) or {}).get("box_frame", "input")


def class_offset_of(runner: Runner, class_offset: int | None = None) -> int:
    """``class_offset``, or the runner's metadata's (0 when it has none)."""
    if class_offset is None:
        return int((getattr(runner, "metadata", None) or {}).get("class_offset", 0))
    return class_offset


def batch_results(outputs: dict[str, np.ndarray], batch: Batch, class_offset: int,
                  score_threshold: float, frame: str = "input") -> list[ImageResult]:
    """One batch's outputs -> a result per real image of the batch (padding dropped)."""
    real = slice(0, batch.count)
    return to_image_results(
        batch.paths, batch.scales, outputs["detection_boxes"][real].astype(np.float32),
        outputs["detection_scores"][real].astype(np.float32),
        outputs["detection_classes"][real].astype(np.int64) - class_offset,
        outputs["num_detections"].reshape(-1)[real].astype(int), score_threshold, frame)


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
# faster on the H100 machine: docs/benchmarks.md, session 7)
IN_FLIGHT = 2


def pipeline_depth(batcher: ImageBatcher, depth: int) -> int:
    """The buffer sets :func:`detect_folder_pipelined` uses: ``depth``, raised for a batcher
    that decodes into them (gpu_decode's ``decoding_ahead``) to those plus IN_FLIGHT."""
    ahead = getattr(batcher, "decoding_ahead", None)
    return depth if ahead is None else max(depth, ahead + IN_FLIGHT)


_END = object()


class _Stopped(Exception):
    """The consumer went away: the producer stops."""


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
    GPU machine, more than the engine's 1.5 ms).
    With a gpu_decode.GpuImageBatcher the batches hold encoded photos, and the producer hands
    each to its stage, which decodes and resizes it on the GPU on a thread of its own (ctypes
    driver calls, any thread; ``depth`` is raised by :func:`pipeline_depth`).
    Runner calls all happen on the calling thread (pycuda needs that)."""
    class_offset = class_offset_of(runner, class_offset)
    frame = box_frame(runner)
    depth = pipeline_depth(batcher, depth)
    open_stage = getattr(batcher, "open_stage", None)  # gpu_decode: decode on the GPU
    pipeline = make_pipeline(runner, batcher.shape, depth, host_input=open_stage is None)
    try:
        stage = open_stage(pipeline) if open_stage is not None else None
    except BaseException:
        pipeline.close()
        raise
    free: queue.Queue[int] = queue.Queue()
    for slot in range(depth):
        free.put(slot)
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()

    def allocate() -> np.ndarray | None:
        while True:
            try:
                slot = free.get(timeout=0.05)
            except queue.Empty:
                if stop.is_set():
                    raise _Stopped from None
                continue
            taken.append(slot)
            return pipeline.input_buffer(slot) if stage is None else None

    def produce() -> None:
        try:
            for batch in batcher.batches(allocate):
                slot = taken.popleft()
                if stage is not None:  # decoded and resized on the GPU: a Future
                    batch = stage.start(slot, batch)
                ready.put((slot, batch))
                if stop.is_set():
                    return
            ready.put(_END)
        except _Stopped:
            pass
        except BaseException as err:  # handed to the consumer, raised there
            ready.put(err)

    taken: deque[int] = deque()
    producer = threading.Thread(target=produce, name="infer-producer", daemon=True)
    producer.start()
    in_flight: deque[tuple[int, Batch]] = deque()
    waiting: deque = deque()  # taken from `ready`, not submitted: its decoding is not done
    finished = False

    def submit_ready(block: bool) -> None:
        """Submits the next batches until IN_FLIGHT (at most ``depth``) are in flight or the
        folder is done; waits for them only when ``block``."""
        nonlocal finished
        while not finished and len(in_flight) < min(depth, IN_FLIGHT):
            if not waiting:
                try:
                    waiting.append(ready.get(block=block))
                except queue.Empty:
                    return
            item = waiting[0]
            if isinstance(item, BaseException):
                raise item
            if item is not _END:
                slot, batch = item
                if isinstance(batch, Future):  # decoded and resized on the GPU
                    if not (block or batch.done()):
                        return
                    batch = batch.result()
                if batch.count:
                    feed = true_image_shape_feed(runner, batch)
                    if stage is None:
                        pipeline.submit(slot, feed)
                    else:  # the stage writes the image input on the device
                        stage.order_engine(slot)
                        pipeline.submit(slot, feed, input_on_device=True)
                    in_flight.append((slot, batch))
                else:  # every image of it unreadable
                    free.put(slot)
            finished = item is _END
            waiting.popleft()

    try:
        while in_flight or not finished:
            submit_ready(block=True)
            if in_flight:
                slot, batch = in_flight.popleft()
                outputs = pipeline.wait(slot)
                free.put(slot)
                submit_ready(block=False)  # the engine gets the next batch before these
                yield from batch_results(outputs, batch, class_offset, score_threshold, frame)
    finally:
        stop.set()
        producer.join()  # it writes into the buffers: it must be gone before they are freed
        try:
            if stage is not None:
                stage.close()
        finally:
            pipeline.close()


def _positive_int(value: object) -> int | None:
    """A static dimension, or None for a dynamic one (-1, None, a symbolic name)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def input_layout(input_shape: list, declared: str | None = None) -> tuple[str, int, int]:
    """(layout, height, width) of an image input: the declared layout, else the 3-channel axis."""
    shape = [_positive_int(v) for v in input_shape]
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D image input, the model takes {list(input_shape)}")
    layout = declared or ("NHWC" if shape[3] == 3 else "NCHW" if shape[1] == 3 else None)
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"cannot tell the layout of the input {list(input_shape)}")
    height, width = shape[2:] if layout == "NCHW" else shape[1:3]
    if height is None or width is None:
        raise ValueError(f"the input {list(input_shape)} has no fixed height and width")
    return layout, height, width


def resolve_preprocessor(
    text: str | None, stored: dict | None, input_hw: tuple[int, int]
) -> Preprocessor:
    """``-p`` (``Preprocessor.from_string`` syntax, or a bare ``fixed_shape`` sized from the
    input) or else the model's metadata; checked against the model's input size."""
    if text is None:
        if not stored:
            raise ValueError(
                "no preprocessor in the model's metadata (not written by create_onnx.py?); pass "
                "-p/--preprocessor, e.g. fixed_shape:300x300 or keep_aspect_ratio:640:1024"
            )
        pre = Preprocessor.from_dict(stored)
    else:
        if text.strip().removesuffix("_resizer") == FIXED_SHAPE:  # NVIDIA's sample's spelling
            text = f"{FIXED_SHAPE}:{input_hw[0]}x{input_hw[1]}"
        pre = Preprocessor.from_string(text)
        if stored:  # the padding value belongs to the model's normalisation
            pre = pre.with_pad_value(Preprocessor.from_dict(stored).pad_value)
    if (pre.height, pre.width) != tuple(input_hw):
        raise ValueError(
            f"the preprocessor {pre.to_string()} makes {pre.height}x{pre.width} inputs but the "
            f"model takes {input_hw[0]}x{input_hw[1]}"
        )
    return pre


def choose_batch_size(
    requested: int | None, batch_dim: object, batch_range: tuple[int, int] | None = None
) -> int:
    """The batch size to run: a static model's own; for a dynamic one (batch dimension -1) the
    request, checked against ``batch_range`` (the engine profile's min, max) when known."""
    static = _positive_int(batch_dim)
    if static is not None:
        if requested not in (None, static):
            raise ValueError(
                f"--batch_size {requested}: the model's batch size is fixed at {static}; use "
                f"--batch_size {static} or convert the model with --batch_size {requested}"
            )
        return static
    low, high = batch_range or (1, None)
    size = requested or high or 1
    if size < low or (high is not None and size > high):
        raise ValueError(
            f"--batch_size {size}: the engine's optimisation profile takes {low} to {high}"
        )
    return size


def make_batcher(
    runner: Runner, images: str | Path, preprocessor: str | None = None,
    batch_size: int | None = None, gpu_decode: bool = False, **batcher_options,
) -> ImageBatcher:
    """An :class:`ImageBatcher` that fits ``runner``'s input (layout, size, batch size); with
    ``gpu_decode`` a gpu_decode.GpuImageBatcher (nvJPEG; TensorRT runners only, for
    :func:`detect_folder_pipelined`).

    A dynamic batch is checked against TrtRunner's ``profile_shapes`` (min, opt, max). Raises
    ValueError (what does not fit, and how to fix it) when the model's input cannot be fed,
    cuda_ctypes.CudaUnavailable where nvJPEG cannot load.
    """
    metadata = runner.metadata or {}
    layout, height, width = input_layout(runner.input_shape, metadata.get("input_format"))
    pre = resolve_preprocessor(preprocessor, metadata.get("preprocessor"), (height, width))
    profile = getattr(runner, "profile_shapes", None)
    batch_range = (profile[0][0], profile[2][0]) if profile else None
    size = choose_batch_size(batch_size, runner.input_shape[0], batch_range)
    if not gpu_decode:
        return ImageBatcher(images, pre, batch_size=size, layout=layout, **batcher_options)
    if not callable(getattr(runner, "pipeline", None)):
        raise ValueError("decoding on the GPU (--decode nvjpeg) needs a TensorRT engine")
    from gpu_decode import GpuImageBatcher

    return GpuImageBatcher(images, pre, batch_size=size, layout=layout, **batcher_options)


def text_lines(result: ImageResult) -> str:
    """The sample's .txt format: ``xmin ymin xmax ymax score class`` per line, tab-separated."""
    return "".join(
        f"{x0:.4f}\t{y0:.4f}\t{x1:.4f}\t{y1:.4f}\t{score:.6g}\t{cls}\n"
        for (x0, y0, x1, y1), score, cls in zip(
            result.boxes.tolist(), result.scores.tolist(), result.classes.tolist(), strict=True)
    )


def coco_records(result: ImageResult, labels: dict[int, str]) -> list[dict]:
    """COCO results entries (bbox = x, y, width, height in pixels; category_id = class + 1)."""
    return [
        {
            "file_name": result.path.name,
            "bbox": [round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4)],
            "score": float(f"{score:.6g}"),
            "category_id": cls + 1,
            "category_name": label_for(labels, cls),
        }
        for (x0, y0, x1, y1), score, cls in zip(
            result.boxes.tolist(), result.scores.tolist(), result.classes.tolist(), strict=True)
    ]


def output_stems(images: list[Path]) -> dict[Path, str]:
    """Output name per image: its stem, or its full name where stems clash (a.jpg, a.png)."""
    counts = Counter(path.stem for path in images)
    return {path: path.stem if counts[path.stem] == 1 else path.name for path in images}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Detect objects with a TensorRT engine or its ONNX model (CPU).",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-e", "--engine", type=Path, help="TensorRT engine (TensorRT and a GPU)")
    model.add_argument("--onnx", type=Path,
                       help="ONNX model from create_onnx.py, run on the CPU without TensorRT")
    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="an image, or a folder of images (.jpg .jpeg .png .bmp)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="folder for the results (created)")
    parser.add_argument("-p", "--preprocessor",
                        help="fixed_shape:HxW or keep_aspect_ratio:MIN:MAX "
                             "(default: from the model's metadata)")
    parser.add_argument("-l", "--labels", type=Path,
                        help="class names: a TFOD label map .pbtxt, or a text file with one "
                             "name per line (line 1 = class 0)")
    parser.add_argument("-t", "--score_threshold", "--nms_threshold", type=float,
                        help="keep detections scoring at least this (default: all that the "
                             "model's NMS keeps, as NVIDIA's sample did; zoo configs keep "
                             "scores down to 1e-8, so pass e.g. 0.3 for readable pictures)")
    parser.add_argument("-b", "--batch_size", type=int,
                        help="images per batch (default: the model's; a static model takes "
                             "only its own)")
    parser.add_argument("--no_pictures", action="store_true",
                        help="write no .png pictures, only .txt and detections.json")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"processes (or threads) decoding and resizing images "
                             f"(default {DEFAULT_WORKERS}; --decode nvjpeg: at most 4 read files)")
    parser.add_argument("--decode", choices=("processes", "threads", "nvjpeg"),
                        default="processes",
                        help="workers for a folder: processes (default; faster on many cores), "
                             "threads (no start-up second; enough for small folders), or "
                             "nvjpeg: JPEGs decoded and resized on the GPU (engines only; "
                             "fastest; pixels differ from TensorFlow's decode by a few levels)")
    parser.add_argument("--writers", type=int, default=4,
                        help="threads writing the result files (default 4)")
    parser.add_argument("--pipeline_depth", type=int, default=2,
                        help="input buffer sets: batches being prepared or run (default 2; "
                             "--decode nvjpeg uses at least 4)")
    parser.add_argument("--serial", action="store_true",
                        help="no pipelining: decode, infer and write one batch after another")
    args = parser.parse_args(argv)
    for name in ("workers", "writers", "pipeline_depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} must be at least 1")
    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score_threshold {args.score_threshold} must lie in [0, 1]")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch_size {args.batch_size} must be at least 1")
    return args


def open_runner(args: argparse.Namespace) -> Runner:
    """TrtRunner for --engine (imported only then), ReferenceRunner for --onnx."""
    path, kind = (args.engine, "engine") if args.engine else (args.onnx, "ONNX model")
    if not path.is_file():
        raise UsageError(f"{path}: {kind} file not found")
    if args.engine:
        try:
            from trt_runner import TrtRunner
        except ImportError as err:
            raise UsageError(f"--engine needs TensorRT ({err}); --onnx runs on the CPU") from err
        loader = TrtRunner
    else:
        from reference_runner import ReferenceRunner

        loader = ReferenceRunner
    try:
        return loader(path)
    except Exception as err:  # whatever the runtime raises for a file it cannot load
        raise UsageError(f"{path}: cannot load the {kind}: {type(err).__name__}: {err}") from err


def save_image_outputs(
    result: ImageResult, output: Path, stem: str, labels: dict[int, str], picture: bool
) -> None:
    """``<stem>.txt`` and (with ``picture``) ``<stem>.png`` in ``output``, written atomically."""
    atomic_write_bytes(output / f"{stem}.txt", text_lines(result).encode())
    if not picture:
        return
    try:
        image = load_image(result.path)
    except ImageError as err:  # changed since the batcher read it
        log.warning("no picture for %s: %s", result.path, err.reason)
        return
    draw_detections(image, result.boxes, result.scores, result.classes, labels,
                    output / f"{stem}.png")


class ResultWriter:
    """Writes each result's files (:func:`save_image_outputs`) on ``threads`` background
    threads (0: in the calling thread), at most ``2 * threads`` results queued, and keeps the
    COCO records in the order the results came. Errors of a write are raised by a later
    ``put`` or by ``close``."""

    def __init__(self, output: Path, stems: dict[Path, str], labels: dict[int, str],
                 pictures: bool, threads: int = 4) -> None:
        self.output, self.stems, self.labels, self.pictures = output, stems, labels, pictures
        self.records: list[dict] = []
        self._threads = threads
        self._pool = (ThreadPoolExecutor(threads, thread_name_prefix="infer-writer")
                      if threads > 0 else None)
        self._pending: deque[Future] = deque()

    def _write(self, result: ImageResult) -> list[dict]:
        save_image_outputs(result, self.output, self.stems[result.path], self.labels,
                           picture=self.pictures)
        return coco_records(result, self.labels)

    def put(self, result: ImageResult) -> None:
        """Queues one result's files (waits while too many are queued)."""
        if self._pool is None:
            self.records += self._write(result)
            return
        while len(self._pending) >= 2 * self._threads:
            self.records += self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, result))

    def close(self) -> list[dict]:
        """Waits for every write; returns all COCO records, in order."""
        try:
            while self._pending:
                self.records += self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
        return self.records


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    images = find_images(args.input)
    labels = load_labels(args.labels) if args.labels else {}
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"{args.output}: exists and is not a folder")
    stems = output_stems(images)
    if not args.no_pictures:
        inputs = {path.resolve() for path in images}
        for path in images:
            if (args.output / f"{stems[path]}.png").resolve() in inputs:
                raise UsageError(f"{path}: its picture would overwrite it; choose another "
                                 "--output or pass --no_pictures")
    if args.decode == "nvjpeg" and (args.serial or args.onnx):
        raise UsageError("--decode nvjpeg runs on the pipelined path of an engine: drop "
                         "--serial / use --engine")
    runner = open_runner(args)
    try:
        batcher = make_batcher(runner, args.input, args.preprocessor, args.batch_size,
                               gpu_decode=args.decode == "nvjpeg", workers=args.workers,
                               processes=args.decode != "threads" and len(images) > 1)
    except ValueError as err:
        raise UsageError(f"{args.engine or args.onnx}: {err}") from err
    args.output.mkdir(parents=True, exist_ok=True)

    threshold = args.score_threshold or 0.0
    if args.serial:  # one thing at a time, files written in this thread
        results = detect_folder(runner, batcher, threshold)
        writer = ResultWriter(args.output, stems, labels, not args.no_pictures, threads=0)
    else:
        results = detect_folder_pipelined(runner, batcher, threshold,
                                          depth=args.pipeline_depth)
        writer = ResultWriter(args.output, stems, labels, not args.no_pictures,
                              threads=args.writers)
    done = found = 0
    start = time.perf_counter()
    try:
        with logging_redirect_tqdm(), tqdm(total=len(batcher), unit="image", desc=PROG) as bar:
            for result in results:
                writer.put(result)
                done, found = done + 1, found + len(result)
                bar.update(done + len(batcher.skipped) - bar.n)
            records = writer.close()
            bar.update(len(batcher) - bar.n)
    finally:
        results.close()
        writer.close()
        if hasattr(batcher, "close"):
            batcher.close()
    elapsed = time.perf_counter() - start
    body = ",\n".join(json.dumps(record) for record in records)
    atomic_write_bytes(args.output / "detections.json", f"[\n{body}\n]\n".encode())
    for path, reason in batcher.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{done} images, {found} detections, {len(batcher.skipped)} skipped, "
          f"{done / elapsed if elapsed > 0 else 0.0:.1f} images/s")
    return 0 if done else 1


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
