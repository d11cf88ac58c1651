"""Writing each image's results (.txt and .png) on background threads, atomically."""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tfod_trt.detect.results import ImageResult, coco_records, pasted_masks, text_lines
from tfod_trt.files import atomic_write_bytes
from tfod_trt.io.images import ImageError, load_image
from tfod_trt.io.pictures import draw_detections
from tfod_trt.stopping import stop_deferred

log = logging.getLogger("infer")


def save_image_outputs(
    result: ImageResult, output: Path, stem: str, labels: dict[int, str], picture: bool,
    masks: np.ndarray | None = None,
) -> list[str]:
    """``<stem>.txt`` and (with ``picture``) ``<stem>.png`` in ``output``, written atomically
    (``masks``, the result's masks in the image, tinted on the picture); returns the names of
    the files written."""
    written = [f"{stem}.txt"]
    atomic_write_bytes(output / written[0], text_lines(result).encode())
    if not picture:
        return written
    try:
        image = load_image(result.path)
    except ImageError as err:  # changed since the batcher read it
        log.warning("no picture for %s: %s", result.path, err.reason)
        return written
    draw_detections(image, result.boxes, result.scores, result.classes, labels,
                    output / f"{stem}.png", masks)
    return [*written, f"{stem}.png"]


class ResultWriter:
    """Writes each result's files (:func:`save_image_outputs`) on ``threads`` background
    threads (0: in the calling thread), at most ``2 * threads`` results queued, and keeps the
    COCO records in the order the results came, and the names of the files written. Errors of
    a write are raised by a later ``put`` or by ``close``."""

    def __init__(self, output: Path, stems: dict[Path, str], labels: dict[int, str],
                 pictures: bool, threads: int = 4) -> None:
        self.output, self.stems, self.labels, self.pictures = output, stems, labels, pictures
        self.records: list[dict] = []
        self.written: set[str] = set()
        self._written_lock = threading.Lock()
        self._threads = threads
        self._pool = (ThreadPoolExecutor(threads, thread_name_prefix="infer-writer")
                      if threads > 0 else None)
        self._pending: deque[Future] = deque()

    def _write(self, result: ImageResult) -> list[dict]:
        masks = pasted_masks(result)
        with stop_deferred():  # an image's .txt is never left without its .png
            names = save_image_outputs(result, self.output, self.stems[result.path],
                                       self.labels, picture=self.pictures, masks=masks)
        with self._written_lock:
            self.written.update(names)
        return coco_records(result, self.labels, masks)

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
