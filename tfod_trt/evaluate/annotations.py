"""A COCO instances file checked before pycocotools sees it: what makes the whole file unusable
(not JSON, not COCO shaped, an id or file name used twice) is an error; an image, category or
annotation that would skew the mAP is dropped and counted."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.evaluate.checks import (
    Dropped,
    Problem,
    is_box,
    is_id,
    is_number,
    is_rle,
    is_segmentation,
    keep_usable,
    listing,
    shown,
)

SECTIONS = ("images", "annotations", "categories")
EDGE_TOLERANCE = 1.0  # pixels a ground-truth box may pass its image's edge (rounding)


def read_coco_file(path: Path) -> dict:
    """The JSON of a COCO instances file, with its three lists; errors name the file."""
    if not path.is_file():
        raise UsageError(f"{path}: annotations file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: cannot read the annotations ({err})") from err
    for key in SECTIONS:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise UsageError(f"{path}: not a COCO annotations file (no '{key}' list)")
    return data


def check_annotations(data: dict, path: Path,
                      segmentation: bool = False) -> tuple[dict, Dropped]:
    """``data`` with only usable images, categories and annotations (``iscrowd`` and ``area``
    filled in where missing), and what was dropped; a UsageError where the file is ambiguous
    (an id or a file name used twice) or has no usable image or category. With
    ``segmentation`` (mask evaluation) annotations need one, of their image's size."""
    dropped = Dropped(path)
    if segmentation:
        _require_segmentations(data, path)
    images = keep_usable(data["images"], "image", _image_problem, dropped)
    categories = keep_usable(data["categories"], "category", _category_problem, dropped)
    _refuse_repeats(path, "image ids", [image["id"] for image in images])
    _refuse_repeats(path, "image file names", [Path(image["file_name"]).name for image in images])
    _refuse_repeats(path, "category ids", [category["id"] for category in categories])
    for section, kept in (("images", images), ("categories", categories)):
        if not kept:
            raise UsageError(f"{path}: no usable {section} ({len(data[section])} listed"
                             + (f"; {dropped.first_entry()})" if dropped else ")"))
    known = _Known({image["id"]: image for image in images},
                   {category["id"] for category in categories},
                   {image["id"] for image in data["images"]
                    if isinstance(image, dict) and is_id(image.get("id"))})
    annotations = keep_usable(data["annotations"], "annotation",
                              partial(_annotation_problem, known=known,
                                      segmentation=segmentation), dropped)
    _refuse_repeats(path, "annotation ids", [ann["id"] for ann in annotations])
    for ann in annotations:  # optional in some exporters' files
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
    return {**data, "images": images, "categories": categories,
            "annotations": annotations}, dropped


def _require_segmentations(data: dict, path: Path) -> None:
    """Mask evaluation of a file whose annotations have no segmentation at all is an error."""
    listed = data["annotations"]
    if listed and not any(isinstance(ann, dict) and "segmentation" in ann for ann in listed):
        raise UsageError(f"{path}: none of its {len(listed)} annotations has a 'segmentation'; "
                         "--iou_type segm needs instance masks (polygons or RLE)")


def _refuse_repeats(path: Path, what: str, values: list[object]) -> None:
    repeated = [value for value, count in Counter(values).items() if count > 1]
    if repeated:
        raise UsageError(f"{path}: {what} used more than once: {listing(map(shown, repeated))} "
                         "(each must name one entry)")


def _image_problem(image: object) -> Problem:
    if not isinstance(image, dict):
        return ("not a JSON object",)
    if not is_id(image.get("id")):
        return ("'id' is missing or not an integer",)
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        return ("'file_name' is missing or not a string",)
    size = [image.get("width"), image.get("height")]
    if not all(is_number(side) and side > 0 for side in size):
        return ("'width' or 'height' is missing or not positive", size)
    return None


def _category_problem(category: object) -> Problem:
    if not isinstance(category, dict):
        return ("not a JSON object",)
    if not is_id(category.get("id")):
        return ("'id' is missing or not an integer",)
    return None


@dataclass
class _Known:
    """What an annotation may refer to: the usable images by id, the category ids, and the ids
    of all listed images (dropped ones included)."""

    images: dict[int, dict]
    categories: set[int]
    listed: set[int]


def _annotation_problem(ann: object, known: _Known, segmentation: bool = False) -> Problem:
    """(reason, [offending value]) of an unusable annotation; None for a usable one."""
    if not isinstance(ann, dict):
        return ("not a JSON object",)
    if not is_id(ann.get("id")):
        return ("'id' is missing or not an integer",)
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not is_id(image_id) or image_id not in known.images:
        listed = is_id(image_id) and image_id in known.listed
        return ("its image was dropped" if listed else "image_id is not in images", image_id)
    if not is_id(category_id) or category_id not in known.categories:
        return ("category_id is not in categories", category_id)
    if not is_box(ann.get("bbox")):
        return ("bbox is not [x, y, width, height] of 4 numbers",)
    x, y, width, height = ann["bbox"]
    if width <= 0 or height <= 0:
        return ("bbox has zero or negative width or height",)
    image = known.images[image_id]
    if (min(x, y) < -EDGE_TOLERANCE or x + width > image["width"] + EDGE_TOLERANCE
            or y + height > image["height"] + EDGE_TOLERANCE):
        return (f"bbox passes its image's edge by more than {EDGE_TOLERANCE:g} pixel",)
    if "area" in ann and not (is_number(ann["area"]) and ann["area"] >= 0):
        return ("area is not a non-negative number", ann["area"])
    if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), float):
        return ("iscrowd is not 0 or 1", ann["iscrowd"])
    return _segmentation_problem(ann.get("segmentation"), image) if segmentation else None


def _segmentation_problem(value: object, image: dict) -> Problem:
    """Why an annotation's segmentation cannot be scored (mask evaluation), or None."""
    if not is_segmentation(value):
        return ("segmentation is missing or not polygons / RLE",)
    if is_rle(value) and value["size"] != [image["height"], image["width"]]:
        return ("segmentation RLE size is not its image's [height, width]", value["size"])
    return None
