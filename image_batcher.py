"""Image loading, TFOD-exact preprocessing and batching (NumPy + Pillow, no TensorFlow).

The exported TFOD SavedModel resizes its float32 input inside the graph. The ONNX/TensorRT
engine takes the already resized image, so this module reproduces TFOD's two image resizers:

* ``fixed_shape``: ``object_detection.core.preprocessor.resize_image``, i.e.
  ``tf.compat.v1.image.resize_images`` (bilinear, ``align_corners=False``).
* ``keep_aspect_ratio``: ``resize_to_range`` with ``pad_to_max_dimension=True``: the output
  size is found with TF's float32 arithmetic and round-half-to-even, the image is resized
  bilinearly and zero padded at the bottom/right to ``[max_dimension, max_dimension]``.

Bilinear resizing follows TF's ResizeBilinear kernel with legacy (not half-pixel) sampling,
``src = dst * in_size / out_size``, computed in float32 in the kernel's order of operations.
"""

from __future__ import annotations

import atexit
import functools
import io
import logging
import math
import multiprocessing
import multiprocessing.queues
import os
import queue
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
FIXED_SHAPE = "fixed_shape"
KEEP_ASPECT_RATIO = "keep_aspect_ratio"
LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class Preprocessor:
    """TFOD's ``image_resizer``; ``height`` x ``width`` is the network input size.

    ``keep_aspect_ratio`` is only supported with ``pad_to_max_dimension`` (TensorRT needs a
    fixed input), so its ``height`` and ``width`` both equal ``max_dimension``.
    """

    kind: str
    height: int
    width: int
    min_dimension: int | None = None
    max_dimension: int | None = None
    # Pixel value of the padding. TFOD's SSD normalises before it resizes and pads with 0 in the
    # normalised space: in pixels that is the value the normalisation maps to 0.
    pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in (FIXED_SHAPE, KEEP_ASPECT_RATIO):
            raise ValueError(
                f"unknown preprocessor kind {self.kind!r}: use {FIXED_SHAPE!r} "
                f"or {KEEP_ASPECT_RATIO!r}"
            )
        for name in ("height", "width", "min_dimension", "max_dimension"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(f"{self.kind} {name} must be a positive integer, got {value!r}")
        if self.kind == FIXED_SHAPE:
            if self.min_dimension is not None or self.max_dimension is not None:
                raise ValueError("fixed_shape takes no min_dimension/max_dimension")
            return
        if self.min_dimension is None or self.max_dimension is None:
            raise ValueError("keep_aspect_ratio needs min_dimension and max_dimension")
        if self.min_dimension > self.max_dimension:
            raise ValueError(
                f"keep_aspect_ratio min_dimension {self.min_dimension} is larger than "
                f"max_dimension {self.max_dimension}"
            )
        if (self.height, self.width) != (self.max_dimension, self.max_dimension):
            raise ValueError(
                "keep_aspect_ratio (padded to max_dimension) needs height == width == "
                f"max_dimension ({self.max_dimension}), got {self.height}x{self.width}"
            )

    @classmethod
    def fixed_shape(cls, height: int, width: int) -> Preprocessor:
        """TFOD ``fixed_shape_resizer`` to ``height`` x ``width``."""
        return cls(FIXED_SHAPE, height, width)

    @classmethod
    def keep_aspect_ratio(cls, min_dimension: int, max_dimension: int) -> Preprocessor:
        """TFOD ``keep_aspect_ratio_resizer`` with ``pad_to_max_dimension: true``."""
        return cls(KEEP_ASPECT_RATIO, max_dimension, max_dimension, min_dimension, max_dimension)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        missing = {"kind", "height", "width"} - set(d)
        if unknown or missing:
            raise ValueError(
                f"bad preprocessor dict {d!r}: unknown keys {sorted(unknown)}, "
                f"missing keys {sorted(missing)}"
            )
        if "pad_value" in d:
            d = {**d, "pad_value": tuple(d["pad_value"])}
        return cls(**d)

    def to_dict(self) -> dict:
        """JSON-able dict (e.g. for ONNX metadata)."""
        return asdict(self)

    def with_pad_value(self, pad_value: tuple[float, float, float]) -> Preprocessor:
        """The same resizer, padding with ``pad_value`` (pixels) instead of zeros."""
        return replace(self, pad_value=tuple(float(v) for v in pad_value))

    @classmethod
    def from_string(cls, text: str) -> Preprocessor:
        """Parse ``fixed_shape:HxW`` or ``keep_aspect_ratio:MIN:MAX`` (e.g. ``640:1024``)."""
        usage = "use 'fixed_shape:HEIGHTxWIDTH' or 'keep_aspect_ratio:MIN:MAX'"
        kind, _, args = text.strip().partition(":")
        kind = kind.removesuffix("_resizer")
        try:
            if kind == FIXED_SHAPE:
                height, width = (int(v) for v in args.lower().split("x"))
                return cls.fixed_shape(height, width)
            if kind == KEEP_ASPECT_RATIO:
                min_dimension, max_dimension = (int(v) for v in args.split(":"))
                return cls.keep_aspect_ratio(min_dimension, max_dimension)
        except ValueError as err:
            raise ValueError(f"bad preprocessor {text!r} ({err}): {usage}") from None
        raise ValueError(f"bad preprocessor {text!r}: {usage}")

    def to_string(self) -> str:
        """Inverse of :meth:`from_string`."""
        if self.kind == FIXED_SHAPE:
            return f"{FIXED_SHAPE}:{self.height}x{self.width}"
        return f"{KEEP_ASPECT_RATIO}:{self.min_dimension}:{self.max_dimension}"


BOX_FRAMES = ("input", "true_image")


@dataclass(frozen=True)
class ImageScale:
    """Sizes needed to map boxes on the network input back to the original image."""

    orig_height: int
    orig_width: int
    resized_height: int  # true image size inside the network input (before padding)
    resized_width: int
    input_height: int  # network input size (padded for keep_aspect_ratio)
    input_width: int

    def to_pixels(self, boxes_normalized_yxyx: np.ndarray, frame: str = "input") -> np.ndarray:
        """Boxes ``[..., 4]`` (ymin, xmin, ymax, xmax) normalised to the network input (frame
        "input") or to the true image inside it (frame "true_image": graphs with a
        true_image_shape input, as TFOD) -> ``[..., 4]`` float64 (xmin, ymin, xmax, ymax) in
        original pixels, clipped to the image.
        """
        boxes = np.asarray(boxes_normalized_yxyx, dtype=np.float64)
        if boxes.shape[-1:] != (4,):
            raise ValueError(f"boxes must have shape [..., 4], got {boxes.shape}")
        if frame not in BOX_FRAMES:
            raise ValueError(f"box frame must be one of {BOX_FRAMES}, got {frame!r}")
        return boxes_to_pixels(boxes, self.pixel_factors(frame)).reshape(boxes.shape)

    def pixel_factors(self, frame: str = "input") -> tuple[float, float, int, int]:
        """(y factor, x factor, height, width) taking normalised boxes of ``frame`` to
        original pixels (see :func:`boxes_to_pixels`)."""
        scale_y, scale_x = float(self.orig_height), float(self.orig_width)
        if frame == "input":
            scale_y *= self.input_height / self.resized_height
            scale_x *= self.input_width / self.resized_width
        return scale_y, scale_x, self.orig_height, self.orig_width


def boxes_to_pixels(boxes_yxyx: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Normalised (ymin, xmin, ymax, xmax) ``[..., K, 4]`` -> (xmin, ymin, xmax, ymax) float64
    pixels clipped to the image; ``factors`` ``[..., 4]`` are :meth:`ImageScale.pixel_factors`
    (one row per image of a batch: ``[B, 4]`` for boxes ``[B, K, 4]``)."""
    # per box column (xmin, ymin, xmax, ymax): its factor, then its upper bound; few NumPy
    # calls, as the pipeline's consumer runs this once per batch
    per_column = np.asarray(factors, np.float64)[..., None, [1, 0, 1, 0, 3, 2, 3, 2]]
    xyxy = np.asarray(boxes_yxyx)[..., [1, 0, 3, 2]] * per_column[..., :4]
    np.maximum(xyxy, 0, out=xyxy)
    return np.minimum(xyxy, per_column[..., 4:], out=xyxy)


class ImageError(ValueError):
    """An image file that cannot be read or decoded."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(self) -> tuple:  # raised in a worker process, re-raised here
        return ImageError, (self.path, self.reason)


def load_image(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Decode an image file (or ``data``, its bytes already read) to HxWx3 RGB uint8.

    Grayscale is replicated, alpha is dropped (not composited), palette and CMYK are converted,
    16-bit grayscale keeps its high byte. EXIF orientation is NOT applied, like TF's
    ``decode_jpeg``/``decode_image`` that the TFOD tools use. JPEG pixels equal TF's
    ``decode_jpeg(dct_method="INTEGER_ACCURATE")``; TF's default (INTEGER_FAST) IDCT differs by
    a few levels. Raises :class:`ImageError` for missing, unreadable, corrupt or truncated files.
    """
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            image.load()  # decodes fully: truncated files fail here
            return _to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(path, str(err) or type(err).__name__) from err


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale PNG
        gray = (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF's compute_interpolation_weights with the legacy scaler: lower, upper, lerp."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    floor = np.floor(src)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    return lower, upper, src - floor


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWxC -> height x width x C float32, as TF's ResizeBilinear (align_corners=False,
    half_pixel_centers=False)."""
    image = np.asarray(image)
    y0, y1, y_lerp = _bilinear_taps(image.shape[0], height)
    x0, x1, x_lerp = _bilinear_taps(image.shape[1], width)
    # The four taps are gathered in the input's dtype (uint8: a quarter of the memory traffic)
    # and only then converted to float32 (exact); np.take gathers faster than fancy indexing.
    top_rows, bottom_rows = np.take(image, y0, axis=0), np.take(image, y1, axis=0)
    top = _lerp(_columns(top_rows, x0), _columns(top_rows, x1), x_lerp[None, :, None])
    bottom = _lerp(_columns(bottom_rows, x0), _columns(bottom_rows, x1), x_lerp[None, :, None])
    return _lerp(top, bottom, y_lerp[:, None, None])


def _columns(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take(rows, index, axis=1).astype(np.float32, copy=False)


def _lerp(low: np.ndarray, high: np.ndarray, t: np.ndarray) -> np.ndarray:
    """low + (high - low) * t in float32, computed in place in ``high`` (a fresh array)."""
    high -= low
    high *= t
    high += low
    return high


def keep_aspect_size(
    height: int, width: int, min_dimension: int, max_dimension: int
) -> tuple[int, int]:
    """``resize_to_range``'s output size: TF's ``resize_images(preserve_aspect_ratio=True)``
    to [min, max] (landscape) or [max, min] (otherwise), in float32, rounded half to even."""
    box = (min_dimension, max_dimension) if height < width else (max_dimension, min_dimension)
    h, w = np.float32(height), np.float32(width)
    factor = min(np.float32(box[0]) / h, np.float32(box[1]) / w)
    return int(np.round(factor * h)), int(np.round(factor * w))


def resized_size(height: int, width: int, pre: Preprocessor) -> tuple[int, int]:
    """The size a ``height`` x ``width`` image has inside the network input (before padding);
    raises ValueError for an image too thin to resize."""
    if pre.kind == FIXED_SHAPE:
        return pre.height, pre.width
    new_height, new_width = keep_aspect_size(height, width, pre.min_dimension, pre.max_dimension)
    if min(new_height, new_width) < 1:
        raise ValueError(f"a {height}x{width} image resizes to {new_height}x{new_width}")
    return new_height, new_width


def preprocess(image: np.ndarray, pre: Preprocessor) -> tuple[np.ndarray, ImageScale]:
    """HxWx3 RGB image -> float32 [pre.height, pre.width, 3] as TFOD's image_resizer makes it
    (pixel values stay 0..255: the model's own normalisation is not applied)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    height, width = image.shape[:2]
    new_height, new_width = resized_size(height, width, pre)
    resized = resize_bilinear(image, new_height, new_width)
    if (new_height, new_width) != (pre.height, pre.width):
        padded = np.empty((pre.height, pre.width, 3), np.float32)
        padded[:] = np.asarray(pre.pad_value, np.float32)
        padded[:new_height, :new_width] = resized
        resized = padded
    scale = ImageScale(height, width, new_height, new_width, pre.height, pre.width)
    return resized, scale


def load_preprocessed(path: Path, pre: Preprocessor) -> tuple[np.ndarray, ImageScale]:
    """Decode and preprocess one image file (the work each batcher worker does)."""
    return preprocess(load_image(path), pre)


PROCESS_START_TIMEOUT_S = 120


def _report_ready(ready: multiprocessing.queues.Queue) -> None:
    """A decode process's initializer: runs once its imports are done."""
    ready.put(os.getpid())


def _wait_until_up(started: list[Future], ready: multiprocessing.queues.Queue) -> None:
    """Waits for one ``ready`` message per task in ``started`` (one task per process); a
    failed task (processes that died starting: BrokenProcessPool) is raised at once."""
    deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
    for _ in started:
        while True:
            try:
                ready.get(timeout=0.1)
                break
            except queue.Empty:
                for future in started:
                    if future.done():
                        future.result()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not up after {PROCESS_START_TIMEOUT_S} s") from None


@functools.cache
def decode_processes(workers: int) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` decode processes, started once per program and shared by every
    batcher that asks for processes; returns once every one is up (starting them costs about
    a second). None, with a warning, where they cannot start (e.g. a program read from
    standard input, which spawned processes cannot re-import): the batchers then decode on
    threads."""
    # spawn, not fork: the parent may hold CUDA contexts and threads, which fork does not copy
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_report_ready,
                               initargs=(ready,))
    try:
        # a process starts for each task while none is idle, so one task each starts them
        # all; waiting for every one keeps a folder's first batches from being read by the
        # first alone while the others still import (measured: the reader's first pass after
        # a short warm-up ran 25-45% slower; docs/benchmarks.md, session 9)
        _wait_until_up([pool.submit(os.getpid) for _ in range(workers)], ready)
    except Exception as err:  # BrokenProcessPool, a timeout, an OS limit
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("decode processes could not start (%s); decoding on threads instead",
                    str(err) or type(err).__name__)
        return None
    atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool


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


def find_images(input: str | Path) -> list[Path]:
    """One image file, or the sorted images of a folder (not recursive, any extension case)."""
    path = Path(input)
    accepted = ", ".join(IMAGE_EXTENSIONS)
    if not path.exists():
        raise FileNotFoundError(f"image path {path} does not exist")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{path} is not an image file (accepted extensions: {accepted})")
        return [path]
    images = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not images:
        raise ValueError(f"no images in folder {path} (accepted extensions: {accepted})")
    return images


class ImageBatcher:
    """Loads and preprocesses images on workers and yields :class:`Batch` es in order.

    Workers are threads, or with ``processes`` the processes of :func:`decode_processes` (the
    decode and the NumPy resize hold the GIL often enough that 16 threads reached 413 images/s
    on the 16-core GPU machine, 16 processes 528: docs/benchmarks.md).

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
        log.warning("skipping image %s: %s", path, reason)
        self.skipped.append((path, reason))
