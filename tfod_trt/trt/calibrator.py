"""TensorRT's INT8 calibrator (8.6 and 10.x) fed with images preprocessed as inference does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfod_trt.files import atomic_write_bytes
from tfod_trt.metadata import TRUE_IMAGE_SHAPE
from tfod_trt.quant import int8
from tfod_trt.quant.sensitive import QuantizeError
from tfod_trt.trt.backends import make_backend
from tfod_trt.trt.build_options import BuildError, BuildOptions

if TYPE_CHECKING:
    from tfod_trt.io.batcher import Batch


log = logging.getLogger("build_engine")


# --calib_method -> TensorRT's calibrator. MinMax is the default: measured on the trained model
# (TensorRT 8.6, H100), EntropyCalibrator2 clipped an early MobileNet ReLU6 to 0.75 (its real
# range: 6) and the engine lost 49 of 54 AP points; Q/DQ with min-max ranges lost 0.3.
CALIBRATORS = {"minmax": "IInt8MinMaxCalibrator", "entropy": "IInt8EntropyCalibrator2"}


class _ImageCalibration:
    """The body of :func:`calibrator_class`'s calibrators, mixed in before TensorRT's base
    (which exists only at run time): feeds preprocessed image batches; reads and writes the
    cache file atomically."""

    def _setup(self, batches: Iterator[Batch], batch_size: int, cache: Path | None,
               backend: Any) -> None:
        self.batches, self.batch_size, self.cache = batches, batch_size, cache
        self.backend = backend  # CUDA back-end, made on the first batch if None
        self.owns_backend = backend is None
        self.buffers: dict[str, tuple[np.ndarray, int]] = {}  # name -> (pinned, device)
        self.count = 0

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str], p_str: Any = None) -> list[int] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        try:
            pointers = [self._upload(name, batch.true_image_shape()
                                     if name == TRUE_IMAGE_SHAPE else batch.data)
                        for name in names]
            self.backend.synchronize()
        except Exception:  # TensorRT swallows exceptions from its callbacks: log them
            log.exception("calibration batch %d could not be copied to the GPU", self.count)
            return None
        self.count += 1
        if self.count % 10 == 0:
            log.info("calibration batch %d", self.count)
        return pointers

    def _upload(self, name: str, array: np.ndarray) -> int:
        if name not in self.buffers:
            self.backend = self.backend or make_backend()
            self.buffers[name] = (self.backend.pinned_empty(array.size, array.dtype),
                                  self.backend.malloc(array.nbytes))
        host, device = self.buffers[name]
        np.copyto(host, array.reshape(-1))
        self.backend.copy_htod_async(device, host)
        return device

    def read_calibration_cache(self) -> bytes | None:
        if self.cache and self.cache.is_file():
            log.info("using the calibration cache %s (no calibration)", self.cache)
            return self.cache.read_bytes()
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        if self.cache:
            atomic_write_bytes(self.cache, bytes(cache))
            log.info("wrote the calibration cache %s", self.cache)

    def close(self) -> None:
        """Frees the GPU buffer once the build is done."""
        for host, device in self.buffers.values():
            self.backend.free_pinned(host)
            self.backend.free(device)
        self.buffers = {}
        if self.owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None


def calibrator_class(trt: Any, method: str = "minmax") -> type:
    """A subclass of this TensorRT module's calibrator for ``method`` (CALIBRATORS; the base
    classes do not exist in TensorRT 11, so the subclass is made on demand)."""
    if method not in CALIBRATORS:
        raise BuildError(f"--calib_method {method}: TensorRT's calibrator offers "
                         f"{', '.join(CALIBRATORS)} (percentile: --int8_mode qdq)")
    base = getattr(trt, CALIBRATORS[method])

    class ImageCalibrator(_ImageCalibration, base):
        """Feeds preprocessed image batches; reads and writes the cache file atomically."""

        def __init__(self, batches: Iterator[Batch], batch_size: int,
                     cache: Path | None, backend: Any = None) -> None:
            base.__init__(self)
            self._setup(batches, batch_size, cache, backend)

    return ImageCalibrator


def calibration_batches(options: BuildOptions, metadata: dict, batch_size: int
                        ) -> Iterator[Batch]:
    """Calibration images preprocessed as create_onnx.py's metadata says, in full batches
    (the same images and order quantize.py's Q/DQ calibration uses)."""
    if options.calib_input is None:
        return iter(())
    try:  # the images are checked now, not inside TensorRT
        return int8.calibration_batches(options.calib_input, metadata, batch_size,
                                        options.calib_num_images, "--calib_input")
    except QuantizeError as err:
        raise BuildError(str(err)) from err
