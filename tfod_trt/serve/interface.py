"""What a served detector takes and gives (the ensemble's tensors), and what travels between
its preprocessing and postprocessing: each image's sizes.

A request carries one or more encoded images (``images``: BYTES [n]); the answer lists every
kept detection of all of them, best score first per image: ``boxes`` FP32 [N, 4] (xmin, ymin,
xmax, ymax in the original image's pixels), ``scores`` FP32 [N], ``classes`` INT32 [N] (0-based),
``labels`` BYTES [N] and ``image_index`` INT32 [N] (which image of the request).
"""

from __future__ import annotations

from dataclasses import astuple, fields
from pathlib import Path

import numpy as np

from tfod_trt.io.resize import ImageScale

IMAGES = "images"
IMAGE_SCALE = "image_scale"  # INT32 [n, 6]: ImageScale's fields, one row per image
SCALE_FIELDS = len(fields(ImageScale))
BOXES, SCORES, CLASSES, LABELS, IMAGE_INDEX = "boxes", "scores", "classes", "labels", "image_index"
RESULTS = (BOXES, SCORES, CLASSES, LABELS, IMAGE_INDEX)
# In the repository: the Python models' config parameter holding their settings (JSON), and
# the ONNX file of the CPU stand-in for an engine
SETTINGS = "settings"
ONNX_FILE = "model.onnx"


def item_names(count: int) -> list[Path]:
    """How the images of a request are named in messages: images[0], images[1], ..."""
    return [Path(f"{IMAGES}[{i}]") for i in range(count)]


def scale_rows(scales: list[ImageScale]) -> np.ndarray:
    """The ``image_scale`` tensor of a request's images."""
    return np.array([astuple(scale) for scale in scales], np.int32).reshape(-1, SCALE_FIELDS)


def scales_from_rows(rows: np.ndarray) -> list[ImageScale]:
    """Inverse of :func:`scale_rows`."""
    return [ImageScale(*map(int, row)) for row in np.asarray(rows).reshape(-1, SCALE_FIELDS)]


def results_by_image(answer: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """A request's answer split per image (``count`` images): each a dict of the results
    without ``image_index``."""
    index = np.asarray(answer[IMAGE_INDEX]).reshape(-1)
    return [{name: np.asarray(answer[name])[index == i] for name in RESULTS if name != IMAGE_INDEX}
            for i in range(count)]
