"""Graph outputs -> per-image results in original pixels, and their text and COCO forms."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfod_trt.config.labels import label_for
from tfod_trt.detect.masks import encode_rle, image_masks
from tfod_trt.detections import Detections
from tfod_trt.graph_names import MASKS_OUTPUT
from tfod_trt.io.batcher import Batch
from tfod_trt.io.resize import ImageScale, boxes_to_pixels


@dataclass
class ImageResult:
    """One image's detections in original-image pixels, best score first."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float64 [N, 4]: xmin, ymin, xmax, ymax, clipped to the image
    scores: np.ndarray  # float32 [N]
    classes: np.ndarray  # int64 [N], 0-based
    masks: np.ndarray | None = None  # Mask R-CNN: float32 [N,h,w], each over its box

    def __len__(self) -> int:
        return len(self.scores)


def to_image_result(
    path: Path, scale: ImageScale, detections: Detections, score_threshold: float,
    box_frame: str = "input",
) -> ImageResult:
    """Maps normalised boxes to pixels and keeps scores >= threshold with a non-zero area."""
    (result,) = to_image_results(
        [path], [scale], detections.boxes.reshape(1, -1, 4), detections.scores.reshape(1, -1),
        detections.classes.reshape(1, -1), np.array([len(detections)]), score_threshold,
        box_frame)
    return result


def to_image_results(
    paths: list[Path], scales: list[ImageScale], boxes: np.ndarray, scores: np.ndarray,
    classes: np.ndarray, counts: np.ndarray, score_threshold: float, box_frame: str = "input",
    masks: np.ndarray | None = None,
) -> list[ImageResult]:
    """:func:`to_image_result` for a batch at once: ``boxes`` [B, K, 4] normalised,
    ``scores`` / ``classes`` (0-based) [B, K], of which the first ``counts`` [B] are valid;
    ``masks`` [B, K, h, w] (Mask R-CNN) follow their detections."""
    factors = np.array([scale.pixel_factors(box_frame) for scale in scales]).reshape(-1, 4)
    pixels = boxes_to_pixels(boxes, factors)
    keep = (
        (np.arange(scores.shape[1]) < np.asarray(counts)[:, None])
        & (scores >= score_threshold)
        & (pixels[..., 2] > pixels[..., 0])
        & (pixels[..., 3] > pixels[..., 1])
    )
    # best score first, ties in output order; what is not kept sorts last. NMS outputs come
    # in that order already: then no sort, else one gather for the batch; then a view per
    # image (few NumPy calls: the pipeline's consumer runs this)
    ranked = np.where(keep, scores, -np.inf)
    if (ranked[:, 1:] > ranked[:, :-1]).any():
        order = np.argsort(-ranked, axis=1, kind="stable")
        rows = np.arange(len(order))[:, None]
        pixels, scores, classes = pixels[rows, order], scores[rows, order], classes[rows, order]
        masks = None if masks is None else masks[rows, order]
    return [ImageResult(path, scale.orig_width, scale.orig_height, pixels[i, :kept],
                        scores[i, :kept], classes[i, :kept],
                        None if masks is None else masks[i, :kept].astype(np.float32))
            for i, (path, scale, kept) in enumerate(zip(paths, scales, keep.sum(axis=1).tolist(),
                                                         strict=True))]


def batch_results(outputs: dict[str, np.ndarray], batch: Batch, class_offset: int,
                  score_threshold: float, frame: str = "input") -> list[ImageResult]:
    """One batch's outputs -> a result per real image of the batch (padding dropped)."""
    return outputs_results(outputs, batch.paths, batch.scales, class_offset, score_threshold,
                           frame)


def outputs_results(outputs: dict[str, np.ndarray], paths: list[Path], scales: list[ImageScale],
                    class_offset: int, score_threshold: float,
                    frame: str = "input") -> list[ImageResult]:
    """The graph's outputs -> a result per image of ``paths`` (the first rows; the rest of
    the batch is padding)."""
    real = slice(0, len(paths))
    masks = outputs.get(MASKS_OUTPUT)
    return to_image_results(
        paths, scales, outputs["detection_boxes"][real].astype(np.float32),
        outputs["detection_scores"][real].astype(np.float32),
        outputs["detection_classes"][real].astype(np.int64) - class_offset,
        outputs["num_detections"].reshape(-1)[real].astype(int), score_threshold, frame,
        None if masks is None else masks[real])


def text_lines(result: ImageResult) -> str:
    """The sample's .txt format: ``xmin ymin xmax ymax score class`` per line, tab-separated."""
    return "".join(
        f"{x0:.4f}\t{y0:.4f}\t{x1:.4f}\t{y1:.4f}\t{score:.6g}\t{cls}\n"
        for (x0, y0, x1, y1), score, cls in zip(
            result.boxes.tolist(), result.scores.tolist(), result.classes.tolist(), strict=True)
    )


def pasted_masks(result: ImageResult) -> np.ndarray | None:
    """The result's masks placed in its image, [N,H,W] bool (TFOD's reframing and threshold,
    detect/masks.py); None for a model without masks."""
    if result.masks is None:
        return None
    return image_masks(result.masks, result.boxes, result.width, result.height)


def coco_records(result: ImageResult, labels: dict[int, str],
                 masks: np.ndarray | None = None) -> list[dict]:
    """COCO results entries (bbox = x, y, width, height in pixels; category_id = class + 1);
    with ``masks`` (:func:`pasted_masks`) each has its "segmentation", COCO's compressed
    RLE."""
    records = [
        {
            "file_name": result.path.name,
            "bbox": [round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4)],
            "score": float(f"{score:.6g}"),
            "category_id": cls + 1,
            "category_name": label_for(labels, cls),
        }
        for (x0, y0, x1, y1), score, cls in zip(
            result.boxes.tolist(), result.scores.tolist(), result.classes.tolist(), strict=True)
    ]
    if masks is not None:
        for record, mask in zip(records, masks, strict=True):
            record["segmentation"] = encode_rle(mask)
    return records


def output_stems(images: list[Path]) -> dict[Path, str]:
    """Output name per image: its stem, or its full name where stems clash (a.jpg, a.png)."""
    counts = Counter(path.stem for path in images)
    return {path: path.stem if counts[path.stem] == 1 else path.name for path in images}
