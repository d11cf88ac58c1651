"""What a served detector takes and gives: the protocol that the exported ensemble, serve_triton.py
and the clients (infer.py / eval_coco.py --triton) share, and what travels between the
preprocessing and the postprocessing (each image's sizes and read error).

A request carries n encoded image files (``images``: BYTES [n, 1], one file per row); the answer
has one row per image, padded to K = the detector's max detections:

| output | type | shape | |
|---|---|---|---|
| ``num_detections`` | INT32 | [n, 1] | detections of the image; -1: the image could not be read |
| ``boxes`` | FP32 | [n, K, 4] | xmin, ymin, xmax, ymax in the original image's pixels |
| ``scores`` | FP32 | [n, K] | best first |
| ``classes`` | INT32 | [n, K] | 0-based |
| ``labels`` | BYTES | [n, K] | class names |
| ``error`` | BYTES | [n, 1] | why the image could not be read (empty when it was) |

Rows past an image's ``num_detections`` are padding: zeros and empty labels. An image that
cannot be decoded is answered in its row (not as an error of the whole request), so that the
other images of the request, and of the requests batched with it, are answered.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from tfod_trt.io.resize import ImageScale

IMAGES = "images"
NUM_DETECTIONS, BOXES, SCORES, CLASSES, LABELS, ERROR = (
    "num_detections", "boxes", "scores", "classes", "labels", "error")
RESULTS = (NUM_DETECTIONS, BOXES, SCORES, CLASSES, LABELS, ERROR)
UNREAD = -1  # num_detections of an image that could not be read
# The config parameter of a static-batch ensemble (max_batch_size 0) that tells clients the most
# images of one request
MAX_IMAGES = "max_images"
IMAGE_SCALE = "image_scale"  # INT32 [n, 6]: ImageScale's fields, one row per image
IMAGE_ERROR = "image_error"  # BYTES [n, 1]: why an image could not be read ("" when it was)
SCALE_FIELDS = len(fields(ImageScale))
# Triton's data types, and the NumPy types PyTriton declares them with
FP32, INT32, STRING = "TYPE_FP32", "TYPE_INT32", "TYPE_STRING"
NUMPY_TYPES = {FP32: np.float32, INT32: np.int32, STRING: np.bytes_}
# In the repository: the postprocessing's names of the detector's outputs (the answer has a
# num_detections of its own), the Python models' config parameter holding their settings (JSON), and
# the ONNX file of the CPU stand-in for an engine
DETECTOR_OUTPUT = "detector_{}"
SETTINGS = "settings"
ONNX_FILE = "model.onnx"


def image_dims() -> tuple[str, tuple[int, ...]]:
    """The ``images`` input: its data type and one image's dims."""
    return STRING, (1,)


def result_dims(max_detections: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each output: its data type and one image's dims (no batch dimension)."""
    k = max_detections
    return {NUM_DETECTIONS: (INT32, (1,)), BOXES: (FP32, (k, 4)), SCORES: (FP32, (k,)),
            CLASSES: (INT32, (k,)), LABELS: (STRING, (k,)), ERROR: (STRING, (1,))}


@dataclass
class ImageAnswer:
    """One image's row of an answer: its detections in pixels, best first, or why it could not
    be read (``error``; then no detection)."""

    boxes: np.ndarray  # float32 [N, 4]
    scores: np.ndarray  # float32 [N]
    classes: np.ndarray  # int32 [N], 0-based
    labels: list[str]
    error: str = ""

    @classmethod
    def unread(cls, reason: str) -> ImageAnswer:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int32), [], reason)


def pack_answer(images: list[ImageAnswer], max_detections: int) -> dict[str, np.ndarray]:
    """The output tensors of a request's (or a batch's) images."""
    n, k = len(images), max_detections
    answer = {NUM_DETECTIONS: np.zeros((n, 1), np.int32), BOXES: np.zeros((n, k, 4), np.float32),
              SCORES: np.zeros((n, k), np.float32), CLASSES: np.zeros((n, k), np.int32),
              LABELS: np.full((n, k), b"", dtype=object),
              ERROR: np.full((n, 1), b"", dtype=object)}
    for row, image in enumerate(images):
        count = len(image.scores)
        if count > k:
            raise ValueError(f"{count} detections for an answer of at most {k} per image")
        answer[NUM_DETECTIONS][row] = UNREAD if image.error else count
        answer[BOXES][row, :count] = image.boxes
        answer[SCORES][row, :count] = image.scores
        answer[CLASSES][row, :count] = image.classes
        answer[LABELS][row, :count] = [label.encode() for label in image.labels]
        answer[ERROR][row] = image.error.encode()
    return answer


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def unpack_answer(answer: dict[str, np.ndarray]) -> list[ImageAnswer]:
    """Inverse of :func:`pack_answer`: each image's row, its padding dropped."""
    counts = np.asarray(answer[NUM_DETECTIONS]).reshape(-1)
    images = []
    for row, count in enumerate(counts.tolist()):
        if count == UNREAD:
            error = _text(np.asarray(answer[ERROR]).reshape(-1)[row])
            images.append(ImageAnswer.unread(error or "the server could not read it"))
            continue
        images.append(ImageAnswer(
            np.asarray(answer[BOXES][row, :count], np.float32).reshape(-1, 4),
            np.asarray(answer[SCORES][row, :count], np.float32),
            np.asarray(answer[CLASSES][row, :count], np.int32),
            [_text(label) for label in np.asarray(answer[LABELS][row, :count]).tolist()]))
    return images


def item_names(count: int) -> list[Path]:
    """How the images of a request are named in messages: images[0], images[1], ..."""
    return [Path(f"{IMAGES}[{i}]") for i in range(count)]


def scale_rows(scales: list[ImageScale]) -> np.ndarray:
    """The ``image_scale`` tensor of a request's images."""
    return np.array([astuple(scale) for scale in scales], np.int32).reshape(-1, SCALE_FIELDS)


def scales_from_rows(rows: np.ndarray) -> list[ImageScale]:
    """Inverse of :func:`scale_rows`."""
    return [ImageScale(*map(int, row)) for row in np.asarray(rows).reshape(-1, SCALE_FIELDS)]


def error_rows(errors: list[str]) -> np.ndarray:
    """The ``image_error`` (or ``error``) tensor [n, 1] of a request's images ("" for an image
    that was read)."""
    return np.array([[error.encode()] for error in errors], dtype=object).reshape(-1, 1)


def errors_from_rows(rows: np.ndarray) -> list[str]:
    """Inverse of :func:`error_rows`."""
    return [_text(value) for value in np.asarray(rows).reshape(-1).tolist()]
