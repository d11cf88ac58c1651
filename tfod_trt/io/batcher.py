"""Batches of preprocessed images from a file or folder, decoded on worker processes or threads;
unreadable images are reported and skipped."""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfod_trt.config.preprocessor import LAYOUTS, Preprocessor
from tfod_trt.io.images import find_images
from tfod_trt.io.processes import decode_processes
from tfod_trt.io.resize import ImageScale, load_preprocessed

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One batch; ``data[count:]`` is zero padding."""

    data: np.ndarray  # float32 [batch_size, ...] in the batcher's layout
    paths: list[Path]
    scales: list[ImageScale]

    @property
    def count(self) -> int:
        """Number of real images in the batch."""
        return len(self.paths)

    def true_image_shape(self) -> np.ndarray:
        """The ``true_image_shape`` input [batch_size, 2] float32: each image's height and
        width inside the network input before padding (TFOD's true_image_shapes[:, :2]);
        padding rows get the whole input."""
        input_size = (self.scales[0].input_height, self.scales[0].input_width)
        feed = np.tile(np.float32(input_size), (self.data.shape[0], 1))
        for row, scale in enumerate(self.scales):
            feed[row] = (scale.resized_height, scale.resized_width)
        return feed


class ImageBatcher:
    """Loads and preprocesses images on workers and yields :class:`Batch` es in order.

    Workers are threads, or with ``processes`` the processes of :func:`decode_processes` (the
    decode and the NumPy resize hold the GIL often enough that 16 threads reached 413 images/s
    on a 16-core H100 machine, 16 processes 528:
    docs/results/2026-11-24-latency-and-models).

    Unreadable images are logged once, recorded in ``skipped`` and left out; the following
    images fill their place. ``exact_batches`` drops a final incomplete batch (e.g. for
    calibration). ``shuffle`` shuffles the file list once (with ``seed``) before
    ``max_images`` is applied.
    """

    def __init__(
        self,
        input: str | Path,
        pre: Preprocessor,
        batch_size: int = 1,
        layout: str = "NHWC",
        max_images: int | None = None,
        workers: int = 4,
        shuffle: bool = False,
        exact_batches: bool = False,
        seed: int = 0,
        processes: bool = False,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        for name, value in (("batch_size", batch_size), ("workers", workers)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        self.pre = pre
        self.batch_size = batch_size
        self.layout = layout
        self.workers = workers
        self.processes = processes
        self.exact_batches = exact_batches
        self.images = find_images(input)
        if shuffle:
            random.Random(seed).shuffle(self.images)
        self.images = self.images[:max_images]
        self.skipped: list[tuple[Path, str]] = []
        # False: unreadable images are only recorded in ``skipped``, for the caller to report
        self.report_skips = True

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape of ``Batch.data``."""
        if self.layout == "NCHW":
            return (self.batch_size, 3, self.pre.height, self.pre.width)
        return (self.batch_size, self.pre.height, self.pre.width, 3)

    @property
    def num_batches(self) -> int:
        """Batches one pass yields (images already known to be bad not counted)."""
        usable = len(self.images) - len(self.skipped)
        if self.exact_batches:
            return usable // self.batch_size
        return math.ceil(usable / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def batches(self, allocate: Callable[[], np.ndarray] | None = None) -> Iterator[Batch]:
        """The batches, in order. ``allocate()`` supplies each batch's ``data`` array (of
        ``shape``; e.g. a reused pinned buffer); it is called only when a batch gets its first
        image, and a final incomplete batch's padding is zeroed. Default: new zero arrays."""
        batch: Batch | None = None
        for path, image, scale in self._preprocessed():
            if batch is None:
                batch = Batch(self._allocate(allocate), [], [])
            batch.data[batch.count] = (image.transpose(2, 0, 1) if self.layout == "NCHW"
                                       else image)
            batch.paths.append(path)
            batch.scales.append(scale)
            if batch.count == self.batch_size:
                yield batch
                batch = None
        if batch is not None and not self.exact_batches:
            batch.data[batch.count:] = 0
            yield batch

    def _allocate(self, allocate: Callable[[], np.ndarray] | None) -> np.ndarray:
        if allocate is None:
            return np.zeros(self.shape, dtype=np.float32)
        data = allocate()
        if data.shape != self.shape:
            raise ValueError(f"allocate() gave an array of shape {data.shape}, the batches "
                             f"have shape {self.shape}")
        return data

    def _preprocessed(self) -> Iterator[tuple[Path, np.ndarray, ImageScale]]:
        """Images in order, at most ``workers + batch_size`` in flight or waiting."""
        shared = decode_processes(self.workers) if self.processes else None
        pool: Executor = shared or ThreadPoolExecutor(self.workers,
                                                      thread_name_prefix="image-batcher")
        pending: deque[tuple[Path, Future]] = deque()
        todo = iter(self.images)
        try:
            while True:
                while len(pending) < self.workers + self.batch_size:
                    path = next(todo, None)
                    if path is None:
                        break
                    pending.append((path, pool.submit(load_preprocessed, path, self.pre)))
                if not pending:
                    return
                path, future = pending.popleft()
                try:
                    image, scale = future.result()
                except ValueError as err:  # ImageError, or an image too thin to resize
                    self._skip(path, getattr(err, "reason", str(err)))
                    continue
                yield path, image, scale
        finally:
            for _, future in pending:
                future.cancel()
            if pool is not shared:  # the process pool stays for the next pass
                pool.shutdown(wait=True, cancel_futures=True)

    def _skip(self, path: Path, reason: str) -> None:
        if any(path == p for p, _ in self.skipped):
            return
        if self.report_skips:
            log.warning("skipping image %s: %s", path, reason)
        self.skipped.append((path, reason))
