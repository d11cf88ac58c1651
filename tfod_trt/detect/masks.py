"""Mask R-CNN's box masks placed in the photo, as TFOD's `reframe_box_masks_to_image_masks`
does, and their COCO run-length encoding.

A graph's mask [h,w] covers its detection box. TFOD resamples it to the whole image with
`tf.image.crop_and_resize` of the mask at the image's corners expressed in the box's frame
(bilinear, 0 outside the box), then keeps the pixels above 0.5. Image row i samples the mask at
y = (i / (H - 1) - ymin) / box_height * (h - 1), in TensorFlow's float32 order of operations;
only the rows and columns that fall inside the mask are computed.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

MASK_THRESHOLD = 0.5  # TFOD keeps the pixels above it (tf.greater)
MIN_BOX_SIZE = np.float32(1e-4)  # TFOD's floor on a box side before dividing by it


def _sample_positions(low: float, high: float, size: int, out: int) -> np.ndarray:
    """Where tf.image.crop_and_resize samples `out` points between the box-frame corners
    low..high of an axis of `size` mask pixels (float32, as TensorFlow's CPU kernel)."""
    low, high = np.float32(low), np.float32(high)
    span = np.float32(size - 1)
    if out == 1:
        return np.array([np.float32(0.5) * (low + high) * span], np.float32)
    scale = (high - low) * span / np.float32(out - 1)
    return low * span + np.arange(out, dtype=np.float32) * scale


def _axis(position: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]:
    """(image indices inside the mask, their floor and ceil mask indices, the lerp weight)."""
    inside = np.flatnonzero((position >= 0) & (position <= size - 1))
    kept = position[inside]
    low = np.floor(kept).astype(np.int64)
    return inside, low, np.ceil(kept).astype(np.int64), (kept - low).astype(np.float32)


def paste_mask(box_mask: np.ndarray, box: np.ndarray, height: int, width: int,
               threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """One detection's mask [h,w] (probabilities over its box) and its box (ymin, xmin, ymax,
    xmax normalised to the image) -> the [height,width] bool mask of the image."""
    mask = np.asarray(box_mask, np.float32)
    ymin, xmin, ymax, xmax = np.asarray(box, np.float32)
    box_h = max(ymax - ymin, MIN_BOX_SIZE)
    box_w = max(xmax - xmin, MIN_BOX_SIZE)
    rows = _axis(_sample_positions(-ymin / box_h, (1 - ymin) / box_h, mask.shape[0], height),
                 mask.shape[0])
    cols = _axis(_sample_positions(-xmin / box_w, (1 - xmin) / box_w, mask.shape[1], width),
                 mask.shape[1])
    image = np.zeros((height, width), bool)
    if not len(rows[0]) or not len(cols[0]):
        return image
    (y_in, top, bottom, y_lerp), (x_in, left, right, x_lerp) = rows, cols
    upper = mask[top][:, left] + (mask[top][:, right] - mask[top][:, left]) * x_lerp
    lower = mask[bottom][:, left] + (mask[bottom][:, right] - mask[bottom][:, left]) * x_lerp
    values = upper + (lower - upper) * y_lerp[:, None]
    image[np.ix_(y_in, x_in)] = values > threshold
    return image


def encode_rle(mask: np.ndarray) -> dict:
    """A bool [H,W] mask -> COCO's compressed RLE, JSON-ready ({"size": [H,W], "counts": str})."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def image_masks(box_masks: np.ndarray, boxes_xyxy: np.ndarray, width: int,
                height: int) -> np.ndarray:
    """Box masks [N,h,w] and their boxes in image pixels (xmin, ymin, xmax, ymax) -> [N,H,W]
    bool masks of the image."""
    scale = np.array([width, height, width, height], np.float64)
    normalised = (np.asarray(boxes_xyxy, np.float64).reshape(-1, 4) / scale)[:, [1, 0, 3, 2]]
    masks = np.zeros((len(normalised), height, width), bool)
    for index, (mask, box) in enumerate(zip(box_masks, normalised, strict=True)):
        masks[index] = paste_mask(mask, box, height, width)
    return masks
