"""Detection matching and the SavedModel-vs-ONNX parity check behind `create_onnx.py --validate`.

Both sides see the same preprocessed image (the network input size, pixels 0..255), so the
check measures the conversion and nothing else: TFOD's resize of an image that already has the
network size is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The plugin's dense path starts below this score (see onnx_utils.NMS_SAFE_SCORE_FLOOR); only
# detections at or above it are compared.
SCORE_FLOOR = 0.01


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

    def add(self, other: MatchResult) -> None:
        self.reference += other.reference
        self.matched += other.matched
        self.unmatched_test += other.unmatched_test
        self.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        self.min_iou = min(self.min_iou, other.min_iou)

    @property
    def rate(self) -> float:
        return self.matched / self.reference if self.reference else 1.0


def match_detections(
    reference: Detections, test: Detections, min_iou: float, max_score_diff: float
) -> MatchResult:
    """Order-insensitive matching: each reference detection, best score first, takes the unused
    test detection of the same class with the highest IoU; it counts as matched when that IoU
    and the score difference are within the limits."""
    result = MatchResult(reference=len(reference))
    if len(reference) == 0:
        result.unmatched_test = len(test)
        return result
    ious = iou_matrix(reference.boxes, test.boxes) if len(test) else np.zeros((len(reference), 0))
    same_class = reference.classes[:, None] == test.classes[None, :]
    ious = np.where(same_class, ious, -1.0)
    used = np.zeros(len(test), bool)
    for r in np.argsort(-reference.scores, kind="stable"):
        candidates = np.where(used, -1.0, ious[r])
        if candidates.size == 0 or candidates.max() < 0:
            continue
        t = int(candidates.argmax())
        diff = abs(float(reference.scores[r]) - float(test.scores[t]))
        if candidates[t] >= min_iou and diff <= max_score_diff:
            used[t] = True
            result.matched += 1
            result.max_score_diff = max(result.max_score_diff, diff)
            result.min_iou = min(result.min_iou, float(candidates[t]))
    result.unmatched_test = int((~used).sum())
    return result


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


class SavedModelRunner:
    """The TFOD SavedModel on TensorFlow, returning the same fields as the ONNX graph."""

    def __init__(self, saved_model: str | Path) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self._tf = tf
        self.detect = tf.saved_model.load(str(saved_model)).signatures["serving_default"]

    def infer(self, images_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        out = self.detect(input_tensor=self._tf.constant(images_nhwc, self._tf.float32))
        return {key: value.numpy() for key, value in out.items()}


@dataclass
class ValidationReport:
    """What `--validate` prints; `passed` decides the exit code."""

    images: int = 0
    detections: MatchResult = field(default_factory=MatchResult)
    max_box_diff: float = 0.0
    max_raw_score_diff: float = 0.0
    min_rate: float = 0.99
    skipped: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.detections.rate >= self.min_rate

    def summary(self) -> str:
        d = self.detections
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{verdict}: {d.matched}/{d.reference} SavedModel detections with score >= "
            f"{SCORE_FLOOR} matched by the ONNX graph ({100 * d.rate:.2f}%, need "
            f">= {100 * self.min_rate:.0f}%) on {self.images} images",
            f"  matched pairs: min IoU {d.min_iou:.5f}, max |score diff| {d.max_score_diff:.2e}; "
            f"{d.unmatched_test} ONNX detections without a partner",
            f"  raw head outputs before NMS: max |box diff| {self.max_box_diff:.2e}, "
            f"max |score diff| {self.max_raw_score_diff:.2e}",
        ]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)


def decode_like_plugin(deltas: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Center-size decoding of EfficientNMS_TRT (box_coding=1) -> corners."""
    y = deltas[..., 0] * anchors[..., 2] + anchors[..., 0]
    x = deltas[..., 1] * anchors[..., 3] + anchors[..., 1]
    h = anchors[..., 2] * np.exp(deltas[..., 2])
    w = anchors[..., 3] * np.exp(deltas[..., 3])
    return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def validate(
    saved_model: Path, onnx_path: Path, images: Path, max_images: int = 16,
    min_iou: float = 0.99, max_score_diff: float = 1e-3, min_rate: float = 0.99,
) -> ValidationReport:
    """Runs the SavedModel and the ONNX graph (CPU reference runtime) on the same images."""
    from tqdm import tqdm

    from image_batcher import ImageBatcher, Preprocessor
    from reference_runner import ReferenceRunner

    runner = ReferenceRunner(onnx_path, extra_outputs=("box_deltas", "class_logits"))
    meta = runner.metadata
    if not meta:
        raise ValueError(f"{onnx_path}: no create_onnx.py metadata in this ONNX file")
    anchors = next(n for n in runner.graph.nodes if n.op == "EfficientNMS_TRT").inputs[2].values
    tf_model = SavedModelRunner(saved_model)
    batcher = ImageBatcher(
        images, Preprocessor.from_dict(meta["preprocessor"]), batch_size=meta["batch_size"],
        layout=meta["input_format"], max_images=max_images,
    )
    report = ValidationReport(min_rate=min_rate)
    for batch in tqdm(batcher, total=batcher.num_batches, desc="validate", unit="batch"):
        nhwc = batch.data if meta["input_format"] == "NHWC" else batch.data.transpose(0, 2, 3, 1)
        ours = runner.infer(batch.data)
        theirs = tf_model.infer(nhwc[: batch.count])
        theirs["detection_classes"] = theirs["detection_classes"] - 1  # TFOD's label offset
        for ref, test in zip(split_batch(theirs), split_batch(ours)[: batch.count], strict=True):
            report.detections.add(match_detections(
                ref.above(SCORE_FLOOR), test.above(SCORE_FLOOR), min_iou, max_score_diff))
        raw_boxes = decode_like_plugin(ours["box_deltas"][: batch.count], anchors)
        report.max_box_diff = max(report.max_box_diff, float(
            np.abs(raw_boxes - theirs["raw_detection_boxes"]).max()))
        tf_scores = theirs["raw_detection_scores"][..., -meta["num_classes"]:]
        our_scores = 1 / (1 + np.exp(-ours["class_logits"][: batch.count].astype(np.float64)))
        report.max_raw_score_diff = max(report.max_raw_score_diff, float(
            np.abs(our_scores - tf_scores).max()))
        report.images += batch.count
    report.skipped = list(batcher.skipped)
    return report
