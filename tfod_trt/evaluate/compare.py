"""TensorFlow and a converted model on the same images: matching, a report and side-by-side
pictures."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from tfod_trt.detect.batch import Runner, box_frame, class_offset_of, run_batch
from tfod_trt.detect.results import ImageResult, to_image_result
from tfod_trt.detections import Detections, split_batch
from tfod_trt.evaluate.matching import MatchResult, match_detections
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.io.images import ImageError, load_image
from tfod_trt.io.pictures import annotate, save_panels

log = logging.getLogger("compare_tf")


def detect_together(
    runners: Sequence[Runner], batcher: ImageBatcher
) -> Iterator[tuple[ImageResult, ...]]:
    """Runs every runner on each batch; yields, per readable image, one result per runner."""
    offsets = [class_offset_of(runner) for runner in runners]
    frames = [box_frame(runner) for runner in runners]
    for batch in batcher:
        outputs = [split_batch(run_batch(runner, batch), offset)[: batch.count]
                   for runner, offset in zip(runners, offsets, strict=True)]
        for path, scale, *found in zip(batch.paths, batch.scales, *outputs, strict=True):
            yield tuple(to_image_result(path, scale, d, 0.0, frame)
                        for d, frame in zip(found, frames, strict=True))


def above(result: ImageResult, threshold: float) -> ImageResult:
    """The detections scoring at least ``threshold``."""
    keep = result.scores >= threshold
    return replace(result, boxes=result.boxes[keep], scores=result.scores[keep],
                   classes=result.classes[keep])


def match(tf: ImageResult, converted: ImageResult, min_iou: float) -> MatchResult:
    """TensorFlow's detections (best first) each paired with the converted model's detection of
    the same class with the highest IoU, when that is >= ``min_iou``."""
    def pixels(r: ImageResult) -> Detections:
        return Detections(r.boxes, r.scores, r.classes)

    return match_detections(pixels(tf), pixels(converted), min_iou, max_score_diff=1.0)


def summary(result: MatchResult) -> dict:
    """The report's numbers for one image or all of them. ``matched_rate``: matched pairs over
    the larger side's detections (1.0 when neither side found anything)."""
    converted = result.matched + result.unmatched_test
    larger = max(result.reference, converted)
    return {
        "tensorflow_detections": result.reference,
        "converted_detections": converted,
        "matched": result.matched,
        "unmatched_tensorflow": result.reference - result.matched,
        "unmatched_converted": result.unmatched_test,
        "matched_rate": result.matched / larger if larger else 1.0,
        "score_diff_mean": result.mean_score_diff if result.matched else None,
        "score_diff_max": result.max_score_diff if result.matched else None,
    }


def describe(name: str, numbers: dict, runtime: str) -> str:
    """One printed line of the report."""
    diffs = ("" if numbers["score_diff_mean"] is None else
             f", |score diff| mean {numbers['score_diff_mean']:.2e} max "
             f"{numbers['score_diff_max']:.2e}")
    return (f"{name}: TensorFlow {numbers['tensorflow_detections']}, {runtime} "
            f"{numbers['converted_detections']}, matched {numbers['matched']} "
            f"({100 * numbers['matched_rate']:.1f}%), unmatched "
            f"{numbers['unmatched_tensorflow']} / {numbers['unmatched_converted']}{diffs}")


def ground_truth(gt: COCO, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """An image's annotated boxes (pixels, xmin ymin xmax ymax) and 0-based classes."""
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    return boxes.reshape(-1, 4), np.array([a["category_id"] - 1 for a in anns], dtype=np.int64)


def save_comparison(
    results: tuple[ImageResult, ImageResult], titles: list[str], names: dict[int, str],
    truth: tuple[np.ndarray, np.ndarray] | None, out_path: Path,
) -> None:
    """The panels of one image: each model's detections, then the ground truth if given."""
    try:
        image = load_image(results[0].path)
    except ImageError as err:  # changed since the batcher read it
        log.warning("no picture for %s: %s", results[0].path, err.reason)
        return
    panels = [annotate(image, r.boxes, r.scores, r.classes, names) for r in results]
    if truth is not None:
        panels.append(annotate(image, truth[0], None, truth[1], names))
    save_panels(panels, titles, out_path)
