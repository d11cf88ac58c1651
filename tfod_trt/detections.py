"""One image's detections as a graph outputs them (normalised boxes, scores, classes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfod_trt.graph_names import MASKS_OUTPUT


@dataclass
class Detections:
    """One image's detections: boxes normalised (y1, x1, y2, x2), 0-based classes; Mask
    R-CNN's masks [N,h,w] (floats in [0, 1], each in its box) where the graph has them."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray | None = None

    def above(self, floor: float) -> Detections:
        keep = self.scores >= floor
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep],
                          None if self.masks is None else self.masks[keep])

    def __len__(self) -> int:
        return len(self.scores)


def split_batch(outputs: dict[str, np.ndarray], class_offset: int = 0) -> list[Detections]:
    """Graph outputs of a batch -> one Detections per image (classes made 0-based; masks where
    the outputs have MASKS_OUTPUT)."""
    count = outputs["num_detections"].reshape(-1).astype(int)
    masks = outputs.get(MASKS_OUTPUT)
    return [
        Detections(
            outputs["detection_boxes"][i, : count[i]].astype(np.float32),
            outputs["detection_scores"][i, : count[i]].astype(np.float32),
            outputs["detection_classes"][i, : count[i]].astype(np.int64) - class_offset,
            None if masks is None else masks[i, : count[i]].astype(np.float32),
        )
        for i in range(len(count))
    ]
