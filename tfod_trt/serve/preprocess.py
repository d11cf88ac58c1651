"""A served detector's preprocessing: a request's encoded images (JPEG, PNG, BMP bytes) -> the
detector's inputs, decoded and resized exactly as infer.py does it (io.images, io.resize), and
each image's sizes for the postprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.graph_names import INPUT_NAME, TRUE_IMAGE_SHAPE
from tfod_trt.io.batcher import Batch
from tfod_trt.io.images import ImageError, load_image
from tfod_trt.io.resize import ImageScale, preprocess
from tfod_trt.serve.interface import (
    IMAGE_ERROR,
    IMAGE_SCALE,
    IMAGES,
    error_rows,
    item_names,
    scale_rows,
)


@dataclass(frozen=True)
class PreprocessSettings:
    """What the preprocessing needs to know of the detector."""

    preprocessor: Preprocessor
    layout: str  # "NHWC" or "NCHW"
    min_batch: int  # a request's images are padded up to this many rows
    max_batch: int  # the most images of one request
    true_image_shape: bool  # the detector takes the true_image_shape input

    def to_dict(self) -> dict:
        """JSON-able (the preprocessing model's config parameter)."""
        return {"preprocessor": self.preprocessor.to_dict(), "layout": self.layout,
                "min_batch": self.min_batch, "max_batch": self.max_batch,
                "true_image_shape": self.true_image_shape}

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSettings:
        """Inverse of :meth:`to_dict`."""
        return cls(Preprocessor.from_dict(data["preprocessor"]), data["layout"],
                   int(data["min_batch"]), int(data["max_batch"]), bool(data["true_image_shape"]))


def check_count(count: int, settings: PreprocessSettings) -> None:
    """ValueError for a request the detector cannot take in one batch."""
    if count < 1:
        raise ValueError("the request has no image: send one or more in 'images'")
    if count > settings.max_batch:
        raise ValueError(f"the request has {count} images; this detector takes at most "
                         f"{settings.max_batch} per request")


def decode_image(data: bytes, pre: Preprocessor) -> tuple[np.ndarray, ImageScale] | str:
    """One image decoded and resized, or the reason it cannot be (run in a decode process
    where the server has them)."""
    try:
        return preprocess(load_image(IMAGES, data), pre)
    except ImageError as err:
        return err.reason


def unread_scale(pre: Preprocessor) -> ImageScale:
    """The sizes given an image that could not be read: the whole input (its row stays
    padding)."""
    return ImageScale(pre.height, pre.width, pre.height, pre.width, pre.height, pre.width)


def preprocess_request(encoded: Sequence[bytes], settings: PreprocessSettings,
                       decoder: Executor | None = None) -> dict[str, np.ndarray]:
    """The detector's inputs (padded to ``min_batch`` rows), ``image_scale`` and
    ``image_error`` for a request's encoded images, decoded by ``decoder``'s workers (in this
    thread without one). An image that cannot be decoded keeps a padding row and its reason in
    ``image_error`` (interface.py: answered in its row)."""
    check_count(len(encoded), settings)
    pre = settings.preprocessor
    rows = max(len(encoded), settings.min_batch)
    shape = (rows, pre.height, pre.width, 3) if settings.layout == "NHWC" else (
        rows, 3, pre.height, pre.width)
    batch = Batch(np.zeros(shape, np.float32), item_names(len(encoded)), [])
    errors = []
    images = [bytes(data) for data in encoded]
    decoded = (decoder.map if decoder is not None else map)(decode_image, images, repeat(pre))
    for row, result in enumerate(decoded):
        if isinstance(result, str):
            batch.scales.append(unread_scale(pre))
            errors.append(result)
            continue
        image, scale = result
        batch.data[row] = image.transpose(2, 0, 1) if settings.layout == "NCHW" else image
        batch.scales.append(scale)
        errors.append("")
    inputs = {INPUT_NAME: batch.data, IMAGE_SCALE: scale_rows(batch.scales),
              IMAGE_ERROR: error_rows(errors)}
    if settings.true_image_shape:
        inputs[TRUE_IMAGE_SHAPE] = batch.true_image_shape()
    return inputs
