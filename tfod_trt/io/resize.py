"""TFOD-exact preprocessing (NumPy, no TensorFlow), and boxes mapped back to the original image.

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfod_trt.config.preprocessor import FIXED_SHAPE, Preprocessor
from tfod_trt.io.images import load_image

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
