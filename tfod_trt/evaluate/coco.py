"""COCO evaluation with pycocotools: annotations and detections read and checked, results as
COCO records, the 12 standard numbers (and per category), of the boxes or (``segm``) of Mask
R-CNN's masks."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tfod_trt.detect.results import ImageResult, coco_records, pasted_masks
from tfod_trt.errors import UsageError
from tfod_trt.evaluate.annotations import check_annotations, read_coco_file
from tfod_trt.evaluate.checks import Dropped, listing
from tfod_trt.evaluate.detection_rows import check_rows

# pycocotools' summary, in its order: name -> (IoU, area, detections per image).
PROG = "eval_coco.py"  # warnings name the command, as its other messages do
IOU_TYPES = ("bbox", "segm")  # pycocotools' kinds of IoU: boxes, instance masks
STATS = {
    "AP": ("0.50:0.95", "all", 100), "AP50": ("0.50", "all", 100),
    "AP75": ("0.75", "all", 100), "APs": ("0.50:0.95", "small", 100),
    "APm": ("0.50:0.95", "medium", 100), "APl": ("0.50:0.95", "large", 100),
    "AR1": ("0.50:0.95", "all", 1), "AR10": ("0.50:0.95", "all", 10),
    "AR100": ("0.50:0.95", "all", 100), "ARs": ("0.50:0.95", "small", 100),
    "ARm": ("0.50:0.95", "medium", 100), "ARl": ("0.50:0.95", "large", 100),
}


# ---------------------------------------------------------------------------------------------
# Annotations, images and categories


def quiet() -> contextlib.AbstractContextManager:
    """Silences pycocotools' progress prints."""
    return contextlib.redirect_stdout(io.StringIO())


def load_annotations(path: Path, iou_type: str = "bbox") -> tuple[COCO, Dropped]:
    """A COCO instances file, checked (tfod_trt.evaluate.annotations; ``segm``: annotations
    need segmentations): the usable part indexed by pycocotools, and what was dropped; errors
    name the file."""
    data, dropped = check_annotations(read_coco_file(path), path, iou_type == "segm")
    gt = COCO()
    gt.dataset = data
    with quiet():
        gt.createIndex()
    return gt, dropped


def image_ids_by_name(gt: COCO) -> dict[str, int]:
    """file name (without folders) -> image id."""
    return {Path(image["file_name"]).name: image["id"] for image in gt.dataset["images"]}


def annotated_images(images: list[Path], gt: COCO, annotations: Path) -> dict[Path, int]:
    """The images the annotations list, with their ids; the others are reported and left out."""
    ids = image_ids_by_name(gt)
    found = {path: ids[path.name] for path in images if path.name in ids}
    absent = [path.name for path in images if path.name not in ids]
    if not found:
        raise UsageError(f"{annotations}: lists none of the {len(images)} images of "
                         f"{images[0].parent} (e.g. {listing(absent[:3])})")
    if absent:
        print(f"{PROG}: warning: {len(absent)} images are not in {annotations}, skipped: "
              f"{listing(absent)}", file=sys.stderr)
    return found


def category_names(gt: COCO) -> dict[int, str]:
    """category_id -> name."""
    return {cat["id"]: cat.get("name", str(cat["id"])) for cat in gt.dataset["categories"]}


def check_categories(
    gt: COCO, annotations: Path, labels: dict[int, str] | None, labels_path: Path | None,
    num_classes: int | None,
) -> None:
    """The annotations' categories must be what the model (ids 1..num_classes) or the label map
    (its ids) can produce, and with a label map every one of its ids must be a category."""
    names = category_names(gt)
    if labels is not None:
        label_ids = {index + 1 for index in labels}
        extra = sorted(label_ids - set(names))
        if extra:
            raise UsageError(f"{labels_path}: label map ids {listing(extra)} are no categories "
                             f"of {annotations}")
        beyond = sorted(i for i in label_ids if num_classes and i > num_classes)
        if beyond:
            raise UsageError(f"{labels_path}: label map ids {listing(beyond)} exceed the "
                             f"model's {num_classes} classes")
        renamed = [f"{i} ({labels[i - 1]!r} vs {names[i]!r})" for i in sorted(label_ids)
                   if labels[i - 1] != names[i]]
        if renamed:
            print(f"{PROG}: warning: {labels_path} names categories of {annotations} "
                  f"differently: {listing(renamed)}", file=sys.stderr)
        producible, source = label_ids, f"the label map {labels_path}"
    elif num_classes:
        producible, source = set(range(1, num_classes + 1)), f"the model's {num_classes} classes"
    else:
        return
    missing = sorted(set(names) - producible)
    if missing:
        raise UsageError(
            f"{annotations}: categories {listing(f'{i} ({names[i]})' for i in missing)} cannot "
            f"be produced by {source} (class index i is category i + 1); pass -l with a label "
            "map of the model's classes and annotations of those categories")


def mask_sizes(gt: COCO, iou_type: str) -> dict[int, list[int]] | None:
    """For mask evaluation, each image's [height, width] (what a detection's RLE must be)."""
    if iou_type != "segm":
        return None
    return {image["id"]: [image["height"], image["width"]] for image in gt.dataset["images"]}


def to_records(
    results: Iterable[ImageResult], image_ids: dict[Path, int], gt: COCO, source: Path | str,
    iou_type: str = "bbox",
) -> tuple[list[dict], Dropped]:
    """COCO results entries with image ids (and a Mask R-CNN's masks as RLE), checked like a
    detections file (``source``: the model): a category (class index + 1) that is none of the
    annotations', a NaN score, ... is dropped and counted."""
    by_class = {cid - 1: name for cid, name in category_names(gt).items()}
    records = [{"image_id": image_ids[result.path], **record} for result in results
               for record in coco_records(result, by_class, pasted_masks(result))]
    return check_rows(records, source, image_ids_by_name(gt), set(category_names(gt)),
                      mask_sizes(gt, iou_type))


def load_detections(path: Path, gt: COCO, score_threshold: float,
                    iou_type: str = "bbox") -> tuple[list[dict], Dropped]:
    """A detections JSON (COCO results, or infer.py's detections.json with file names): its
    usable rows scoring at least ``score_threshold`` (``segm``: rows need an RLE
    "segmentation"), and what was dropped."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: cannot read the detections ({err})") from err
    if not isinstance(rows, list):
        raise UsageError(f"{path}: not a detections file (a JSON list of COCO results)")
    records, dropped = check_rows(rows, path, image_ids_by_name(gt), set(category_names(gt)),
                                  mask_sizes(gt, iou_type))
    return [record for record in records if record["score"] >= score_threshold], dropped


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class CocoScores:
    """pycocotools' 12 summary numbers by name (-1: no ground truth of that kind), and per
    category: id, name, ground-truth boxes, AP and AP50."""

    stats: dict[str, float]
    per_category: list[dict]

    def table(self) -> str:
        return "\n".join(
            f"{name:<6}{value:8.4f}   IoU={iou:<9} area={area:<6} maxDets={dets}"
            for (name, (iou, area, dets)), value in zip(STATS.items(), self.stats.values(),
                                                         strict=True)
        )

    def category_table(self) -> str:
        lines = [f"{'id':>4}  {'category':<20}{'boxes':>6}{'AP':>8}{'AP50':>8}"]
        lines += [
            f"{c['id']:>4}  {c['name'][:20]:<20}{c['boxes']:>6}"
            + "".join(f"{v:8.4f}" if v >= 0 else f"{'-':>8}" for v in (c["AP"], c["AP50"]))
            for c in self.per_category
        ]
        return "\n".join(lines)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def score_detections(gt: COCO, records: list[dict], image_ids: Iterable[int],
                     iou_type: str = "bbox") -> CocoScores:
    """COCO evaluation of ``records`` over exactly ``image_ids``: of their boxes, or (``segm``)
    of their masks, whose areas then come from the masks, as pycocotools gives them to
    results without a box."""
    drop = {"bbox"} if iou_type == "segm" else set()
    with quiet():
        if records:  # loadRes adds keys: copies
            dt = gt.loadRes([{k: v for k, v in record.items() if k not in drop}
                             for record in records])
        else:  # loadRes refuses an empty list: no detections scores 0
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "annotations": [],
                          "categories": gt.dataset["categories"]}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU, recall, category, area, maxDets]
    names = category_names(gt)
    per_category = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        anns = gt.loadAnns(gt.getAnnIds(imgIds=evaluator.params.imgIds, catIds=[cat_id],
                                        iscrowd=False))
        per_category.append({
            "id": cat_id, "name": names[cat_id], "boxes": len(anns),
            "AP": _mean_valid(precision[:, :, k, 0, -1]),
            "AP50": _mean_valid(precision[0, :, k, 0, -1]),
        })
    return CocoScores(dict(zip(STATS, map(float, evaluator.stats), strict=True)), per_category)
