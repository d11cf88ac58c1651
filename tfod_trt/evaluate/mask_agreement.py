"""How far two models' instance masks agree on matched detections: the IoU of the masks
binarised as TFOD binarises them (above 0.5), each pair compared in its own box frame (the
masks' [h,w] layout)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfod_trt.detect.masks import MASK_THRESHOLD
from tfod_trt.detections import Detections
from tfod_trt.evaluate.matching import Pair

MIN_MEAN_MASK_IOU = 0.99  # create_onnx.py --validate passes at or above this mean


def binary_mask_iou(first: np.ndarray, second: np.ndarray,
                    threshold: float = MASK_THRESHOLD) -> float:
    """IoU of two masks of one shape binarised (above `threshold`); 1.0 when both are
    empty."""
    a, b = first > threshold, second > threshold
    union = int(np.logical_or(a, b).sum())
    return float(np.logical_and(a, b).sum()) / union if union else 1.0


@dataclass
class MaskAgreement:
    """Binarised mask IoU over the matched detection pairs of several images."""

    pairs: int = 0
    sum_iou: float = 0.0
    min_iou: float = 1.0

    def add(self, reference: Detections, test: Detections, pairs: list[Pair]) -> None:
        """Adds the masks of `pairs` (matched from `reference` to `test`); ValueError when a
        side has no masks."""
        for side, found in (("the SavedModel", reference), ("the ONNX graph", test)):
            if found.masks is None:
                raise ValueError(f"{side} gives no detection_masks; the other does")
        for pair in pairs:
            iou = binary_mask_iou(reference.masks[pair.reference], test.masks[pair.test])
            self.pairs += 1
            self.sum_iou += iou
            self.min_iou = min(self.min_iou, iou)

    @property
    def mean_iou(self) -> float:
        return self.sum_iou / self.pairs if self.pairs else 1.0

    @property
    def passed(self) -> bool:
        return self.mean_iou >= MIN_MEAN_MASK_IOU

    def summary(self) -> str:
        return (f"  masks of the {self.pairs} matched detections (pixels above "
                f"{MASK_THRESHOLD}): mean IoU {self.mean_iou:.5f} (need >= "
                f"{MIN_MEAN_MASK_IOU}), min {self.min_iou:.5f}")
