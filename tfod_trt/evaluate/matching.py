"""Matching two models' detections (same class, IoU, score difference) and the match counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfod_trt.detections import Detections

# The plugin's dense path starts below this score (see onnx_utils.NMS_SAFE_SCORE_FLOOR); only
# detections at or above it are compared.
SCORE_FLOOR = 0.01


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N,4] against every box in b [M,4] (corner boxes, any order)."""
    a = np.concatenate([np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:])], 1)
    b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class MatchResult:
    """How many reference detections found a partner, and how far apart the partners are."""

    reference: int = 0
    matched: int = 0
    max_score_diff: float = 0.0
    min_iou: float = 1.0
    unmatched_test: int = 0
    sum_score_diff: float = 0.0

    def add(self, other: MatchResult) -> None:
        self.reference += other.reference
        self.matched += other.matched
        self.unmatched_test += other.unmatched_test
        self.sum_score_diff += other.sum_score_diff
        self.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        self.min_iou = min(self.min_iou, other.min_iou)

    @property
    def rate(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def mean_score_diff(self) -> float:
        return self.sum_score_diff / self.matched if self.matched else 0.0


@dataclass(frozen=True)
class Pair:
    """A matched pair: indices into the reference and the test detections, IoU, |score diff|."""

    reference: int
    test: int
    iou: float
    score_diff: float


def match_pairs(reference: Detections, test: Detections, min_iou: float,
                max_score_diff: float) -> list[Pair]:
    """Order-insensitive matching: each reference detection, best score first, takes the unused
    test detection of the same class with the highest IoU; it is matched when that IoU and the
    score difference are within the limits."""
    if len(reference) == 0:
        return []
    ious = iou_matrix(reference.boxes, test.boxes) if len(test) else np.zeros((len(reference), 0))
    same_class = reference.classes[:, None] == test.classes[None, :]
    ious = np.where(same_class, ious, -1.0)
    used = np.zeros(len(test), bool)
    pairs = []
    for r in np.argsort(-reference.scores, kind="stable"):
        candidates = np.where(used, -1.0, ious[r])
        if candidates.size == 0 or candidates.max() < 0:
            continue
        t = int(candidates.argmax())
        diff = abs(float(reference.scores[r]) - float(test.scores[t]))
        if candidates[t] >= min_iou and diff <= max_score_diff:
            used[t] = True
            pairs.append(Pair(int(r), t, float(candidates[t]), diff))
    return pairs


def match_result(reference: Detections, test: Detections, pairs: list[Pair]) -> MatchResult:
    """The counts and extremes of `pairs`, matched between `reference` and `test`."""
    result = MatchResult(reference=len(reference), matched=len(pairs),
                         unmatched_test=len(test) - len(pairs))
    for pair in pairs:
        result.max_score_diff = max(result.max_score_diff, pair.score_diff)
        result.sum_score_diff += pair.score_diff
        result.min_iou = min(result.min_iou, pair.iou)
    return result


def match_detections(
    reference: Detections, test: Detections, min_iou: float, max_score_diff: float
) -> MatchResult:
    """:func:`match_pairs`, counted (:func:`match_result`)."""
    return match_result(reference, test, match_pairs(reference, test, min_iou, max_score_diff))
