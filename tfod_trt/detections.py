"""One image's detections as a graph outputs them (normalised boxes, scores, classes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """One image's detections: boxes normalised (y1, x1, y2, x2), 0-based classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def above(self, floor: float) -> Detections:
        keep = self.scores >= floor
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    def __len__(self) -> int:
        return len(self.scores)


def split_batch(outputs: dict[str, np.ndarray], class_offset: int = 0) -> list[Detections]:
    """Graph outputs of a batch -> one Detections per image (classes made 0-based)."""
    count = outputs["num_detections"].reshape(-1).astype(int)
    return [
        Detections(
            outputs["detection_boxes"][i, : count[i]].astype(np.float32),
            outputs["detection_scores"][i, : count[i]].astype(np.float32),
            outputs["detection_classes"][i, : count[i]].astype(np.int64) - class_offset,
        )
        for i in range(len(count))
    ]
