"""Running a model over batches: the Runner interface, one batch (with its true_image_shape
input where the graph has one), and the serial folder loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from tfod_trt.detect.results import ImageResult, batch_results
from tfod_trt.io.batcher import Batch, ImageBatcher


class Runner(Protocol):
    """ReferenceRunner, TrtRunner: one static-shape batch in, the graph's outputs out."""

    metadata: dict

    @property
    def input_shape(self) -> list: ...

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


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


def dynamic_batch_range(runner: Runner) -> tuple[int, int | None] | None:
    """(smallest, largest) batch that a dynamic-batch runner takes, from a TensorRT engine's
    optimization profile (largest None: no limit, as on the CPU reference runtime); None for
    a static batch (also for a runner that declares no input shape)."""
    shape = getattr(runner, "input_shape", None)
    dim = shape[0] if shape else 1
    if isinstance(dim, (int, np.integer)) and dim > 0:
        return None
    profile = getattr(runner, "profile_shapes", None)
    return (int(profile[0][0]), int(profile[2][0])) if profile else (1, None)


def rows_to_run(runner: Runner, batch: Batch) -> int:
    """How many rows of ``batch.data`` go through the runner: the whole padded batch for a
    static batch; for a dynamic one only the real images (at least the profile's minimum)."""
    allowed = dynamic_batch_range(runner)
    if allowed is None:
        return len(batch.data)
    return min(len(batch.data), max(batch.count, allowed[0]))


def run_batch(runner: Runner, batch: Batch) -> dict[str, np.ndarray]:
    """``runner.infer`` on a batch, with its true_image_shape input where the graph has one
    (a dynamic-batch runner gets a partial batch without its padding rows, see
    :func:`rows_to_run`); ``runner.infer_photos`` on the batch's files for a runner that
    resizes photos itself (``takes_photos``: TensorFlow on a keep_aspect_ratio model)."""
    if getattr(runner, "takes_photos", False):
        return runner.infer_photos(batch.paths)
    rows = rows_to_run(runner, batch)
    data, feed = batch.data[:rows], true_image_shape_feed(runner, batch)
    return runner.infer(data) if feed is None else runner.infer(data, feed[:rows])


def box_frame(runner: Runner) -> str:
    """What the runner's boxes are normalised to: "input" or "true_image" (the metadata)."""
    return (getattr(runner, "metadata", None) or {}).get("box_frame", "input")


def class_offset_of(runner: Runner, class_offset: int | None = None) -> int:
    """``class_offset``, or the runner's metadata's (0 when it has none)."""
    if class_offset is None:
        return int((getattr(runner, "metadata", None) or {}).get("class_offset", 0))
    return class_offset
