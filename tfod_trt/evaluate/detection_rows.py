"""Detections (COCO results rows) checked before pycocotools scores them: a row that names no
image or category of the annotations, or whose box or score pycocotools would mis-rank or choke
on, is dropped and counted."""

from __future__ import annotations

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
    keep_usable,
)


def check_rows(rows: list, source: Path | str, image_ids: dict[str, int],
               categories: set[int], mask_sizes: dict[int, list[int]] | None = None,
               ) -> tuple[list[dict], Dropped]:
    """The usable rows, each with its ``image_id`` (from ``file_name`` where it has none:
    ``image_ids`` maps file names to ids), and what was dropped. A UsageError where rows were
    given and none is usable. ``mask_sizes`` (mask evaluation: image id -> [height, width])
    requires each row's "segmentation", an RLE of its image's size."""
    dropped = Dropped(source)
    known = set(image_ids.values())
    kept = keep_usable(rows, "detection", partial(
        _row_problem, image_ids=image_ids, known=known, categories=categories,
        mask_sizes=mask_sizes), dropped)
    if rows and not kept:
        raise UsageError(f"{source}: none of its {len(rows)} detections can be scored "
                         f"(first: {dropped.first_entry()})")
    return [{**row, "image_id": _image_id(row, image_ids)} for row in kept], dropped


def _image_id(row: dict, image_ids: dict[str, int]) -> object:
    """The row's image id, or the id of its file name (without folders)."""
    if "image_id" in row:
        return row["image_id"]
    name = row.get("file_name")
    return image_ids.get(Path(name).name) if isinstance(name, str) else None


def _row_problem(row: object, image_ids: dict[str, int], known: set[int],
                 categories: set[int], mask_sizes: dict[int, list[int]] | None = None,
                 ) -> Problem:
    """(reason, [offending value]) of an unusable row; None for a usable one."""
    if not isinstance(row, dict):
        return ("not a JSON object",)
    if "image_id" not in row and "file_name" not in row:
        return ("no image_id or file_name",)
    image_id = _image_id(row, image_ids)
    if not is_id(image_id) or image_id not in known:
        field = "image_id" if "image_id" in row else "file_name"
        return (f"{field} is not an image of the annotations", row[field])
    category_id = row.get("category_id")
    if not is_id(category_id) or category_id not in categories:
        return ("category_id is not in the annotations' categories", category_id)
    if not is_box(row.get("bbox")):
        return ("bbox is not [x, y, width, height] of 4 numbers",)
    if row["bbox"][2] < 0 or row["bbox"][3] < 0:
        return ("bbox has a negative width or height",)
    score = row.get("score")
    if not is_number(score):
        return ("score is not a finite number", score)
    if not 0.0 <= score <= 1.0:
        return ("score is outside [0, 1]", score)
    return None if mask_sizes is None else _mask_problem(row, mask_sizes[image_id])


def _mask_problem(row: dict, size: list[int]) -> Problem:
    """Mask evaluation: the row's segmentation must be an RLE of its image's size."""
    segmentation = row.get("segmentation")
    if not is_rle(segmentation):
        return ("segmentation is missing or not COCO RLE ({'size', 'counts'})",)
    if segmentation["size"] != size:
        return ("segmentation size is not its image's [height, width]", segmentation["size"])
    return None
