"""eval_coco.py's checks of the annotations and the detections (tfod_trt/evaluate/annotations.py,
detection_rows.py) on small COCO files written here: an unusable entry is dropped with one
counted warning line per reason (the mAP is then that of the usable rest), --strict refuses it
in one line, and a file that cannot be evaluated at all is refused either way."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fixtures import converted_onnx
from test_eval_coco import (
    MODEL,
    Run,
    expect_error,
    link_images,
    run_cli,
    write_fixture_categories,
)

# Two images, two categories, one box each: detections copying both boxes score 1.
IMAGES = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
          {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}]
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
BOXES = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
         {"id": 2, "image_id": 2, "category_id": 2, "bbox": [30, 30, 40, 20]}]
COPIES = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
          {"image_id": 2, "category_id": 2, "bbox": [30, 30, 40, 20], "score": 0.8}]


def coco(images: list = IMAGES, annotations: list = BOXES, categories: list = CATEGORIES) -> dict:
    return copy.deepcopy({"images": images, "annotations": annotations,
                          "categories": categories})


def write(folder: Path, name: str, content: object) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def evaluate(tmp_path: Path, annotations: object, detections: object = COPIES,
             *flags: str) -> tuple[Run, Path, Path]:
    """eval_coco.py --detections on the two written files: (run, annotations, detections)."""
    ann = write(tmp_path, "instances.json", annotations)
    det = write(tmp_path, "detections.json", detections)
    return run_cli("--detections", det, "-a", ann, *flags), ann, det


def warnings(run: Run) -> list[str]:
    return [line for line in run.err.splitlines() if line.startswith("eval_coco.py: warning: ")]


# ---------------------------------------------------------------------------------------------
# Unusable entries of the annotations: dropped and counted, or refused with --strict

ANNOTATION_CASES = {  # case -> (extra images, extra annotations, extra categories, warnings)
    "category not in categories": (
        [], [{"id": 3, "image_id": 1, "category_id": 91, "bbox": [50, 50, 20, 20]},
             {"id": 4, "image_id": 2, "category_id": 92, "bbox": [50, 50, 20, 20]}], [],
        ["2 annotations dropped: category_id is not in categories: 91, 92"]),
    "image not in images": (
        [], [{"id": 3, "image_id": 9, "category_id": 1, "bbox": [50, 50, 20, 20]}], [],
        ["1 annotation dropped: image_id is not in images: 9"]),
    "negative size": (
        [], [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [50, 50, -20, 20]}], [],
        ["1 annotation dropped: bbox has zero or negative width or height"]),
    "zero size": (
        [], [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 0]}], [],
        ["1 annotation dropped: bbox has zero or negative width or height"]),
    "outside the image": (
        [], [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [90, 10, 20, 20]},
             {"id": 4, "image_id": 2, "category_id": 2, "bbox": [-5, 10, 20, 20]}], [],
        ["2 annotations dropped: bbox passes its image's edge by more than 1 pixel"]),
    "bbox of strings and null": (
        [], [{"id": 3, "image_id": 1, "category_id": 1, "bbox": ["50", None, 20, 20]},
             {"id": 4, "image_id": 1, "category_id": 1, "bbox": None}], [],
        ["2 annotations dropped: bbox is not [x, y, width, height] of 4 numbers"]),
    "no annotation id": (
        [], [{"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20]}], [],
        ["1 annotation dropped: 'id' is missing or not an integer"]),
    "negative area": (
        [], [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20],
              "area": -400}], [],
        ["1 annotation dropped: area is not a non-negative number: -400"]),
    "iscrowd not 0 or 1": (
        [], [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20],
              "iscrowd": 2}], [],
        ["1 annotation dropped: iscrowd is not 0 or 1: 2"]),
    "image without file_name": (
        [{"id": 3, "width": 100, "height": 80}],
        [{"id": 3, "image_id": 3, "category_id": 1, "bbox": [50, 50, 20, 20]}], [],
        ["1 image dropped: 'file_name' is missing or not a string",
         "1 annotation dropped: its image was dropped: 3"]),
    "image without width and height": (
        [{"id": 3, "file_name": "c.jpg"}, {"id": 4, "file_name": "d.jpg", "width": 0,
                                           "height": 80}], [], [],
        ["2 images dropped: 'width' or 'height' is missing or not positive: [null, null], "
         "[0, 80]"]),
    "category without an id": (
        [], [], [{"name": "bird"}],
        ["1 category dropped: 'id' is missing or not an integer"]),
}


@pytest.mark.parametrize("case", ANNOTATION_CASES)
def test_unusable_annotations_are_dropped_and_counted(case: str, tmp_path: Path) -> None:
    images, annotations, categories, expected = ANNOTATION_CASES[case]
    run, ann, _ = evaluate(tmp_path, coco(IMAGES + images, BOXES + annotations,
                                          CATEGORIES + categories))
    assert run.code == 0, run.err
    assert warnings(run) == [f"eval_coco.py: warning: {ann}: {line}" for line in expected]
    assert run.stats["AP"] == 1.0 and run.stats["AR100"] == 1.0  # as without the bad entries
    assert run.counts == (2, 2)


@pytest.mark.parametrize("case", ["category not in categories", "negative size",
                                  "image without file_name"])
def test_strict_refuses_unusable_annotations(case: str, tmp_path: Path) -> None:
    images, annotations, categories, _ = ANNOTATION_CASES[case]
    run, ann, _ = evaluate(tmp_path, coco(IMAGES + images, BOXES + annotations,
                                          CATEGORIES + categories), COPIES, "--strict")
    first = {
        "category not in categories": "annotation 3 (id 3): category_id is not in categories: "
                                      "91 (--strict; 2 unusable entries in all)",
        "negative size": "annotation 3 (id 3), bbox [50, 50, -20, 20]: bbox has zero or "
                         "negative width or height (--strict; 1 unusable entry in all)",
        "image without file_name": "image 3 (id 3): 'file_name' is missing or not a string "
                                   "(--strict; 2 unusable entries in all)",
    }[case]
    expect_error(run, f"{ann}: {first}")
    assert run.err.count("\n") == 1 and not run.out  # one line, no numbers


def test_a_clean_file_passes_strict(tmp_path: Path) -> None:
    run, _, _ = evaluate(tmp_path, coco(), COPIES, "--strict")
    assert run.code == 0, run.err
    assert not warnings(run) and run.stats["AP"] == 1.0


# ---------------------------------------------------------------------------------------------
# Annotations that cannot be evaluated at all: refused without --strict too

FATAL_CASES = {  # case -> (file content, what the error line says)
    "not JSON": ("{'images': []", "cannot read the annotations"),
    "a JSON list": ([], "not a COCO annotations file (no 'images' list)"),
    "no categories": ({"images": IMAGES, "annotations": BOXES},
                      "not a COCO annotations file (no 'categories' list)"),
    "annotations not a list": ({**coco(), "annotations": {"id": 1}},
                               "not a COCO annotations file (no 'annotations' list)"),
    "duplicate image ids": (coco(IMAGES + [{"id": 2, "file_name": "c.jpg", "width": 100,
                                            "height": 80}]),
                            "image ids used more than once: 2 (each must name one entry)"),
    "duplicate file names": (coco(IMAGES + [{"id": 3, "file_name": "photos/b.jpg",
                                             "width": 100, "height": 80}]),
                             'image file names used more than once: "b.jpg"'),
    "duplicate annotation ids": (coco(annotations=BOXES + [{**BOXES[0], "bbox": [5, 5, 9, 9]}]),
                                 "annotation ids used more than once: 1"),
    "duplicate category ids": (coco(categories=CATEGORIES + [{"id": 2, "name": "bird"}]),
                               "category ids used more than once: 2"),
    "no usable image": (coco(images=[{"id": 1, "file_name": "a.jpg"}]),
                        "no usable images (1 listed; image 1 (id 1): 'width' or 'height' is "
                        "missing or not positive: [null, null])"),
    "no category": (coco(categories=[]), "no usable categories (0 listed)"),
}


@pytest.mark.parametrize("case", FATAL_CASES)
def test_unusable_annotation_files_are_refused(case: str, tmp_path: Path) -> None:
    content, message = FATAL_CASES[case]
    run, ann, _ = evaluate(tmp_path, content)
    expect_error(run, f"{ann}: {message}")


# ---------------------------------------------------------------------------------------------
# Unusable detection rows: dropped and counted, or refused with --strict

DETECTION_CASES = {  # case -> (extra rows, warnings)
    "NaN score": ([{**COPIES[1], "bbox": [0, 0, 50, 50], "score": float("nan")}],
                  ["1 detection dropped: score is not a finite number: NaN"]),
    "score above 1 and below 0": ([{**COPIES[1], "bbox": [0, 0, 50, 50], "score": 1.5},
                                   {**COPIES[0], "bbox": [0, 0, 50, 50], "score": -0.25}],
                                  ["2 detections dropped: score is outside [0, 1]: 1.5, -0.25"]),
    "score a string": ([{**COPIES[1], "score": "0.95"}],
                       ['1 detection dropped: score is not a finite number: "0.95"']),
    "negative size": ([{**COPIES[1], "bbox": [80, 70, -50, -50], "score": 0.99}],
                      ["1 detection dropped: bbox has a negative width or height"]),
    "unknown category": ([{**COPIES[1], "category_id": 5}, {**COPIES[0], "category_id": None}],
                         ["2 detections dropped: category_id is not in the annotations' "
                          "categories: 5, null"]),
    "bbox of strings and null": ([{**COPIES[1], "bbox": ["30", 30, 40, 20]},
                                  {**COPIES[1], "bbox": [30, None, 40, 20]}],
                                 ["2 detections dropped: bbox is not [x, y, width, height] of 4 "
                                  "numbers"]),
    "unknown image id": ([{**COPIES[1], "image_id": 7}],
                         ["1 detection dropped: image_id is not an image of the annotations: 7"]),
    "unknown file name": ([{"file_name": "holiday.jpg", **{k: v for k, v in COPIES[1].items()
                                                          if k != "image_id"}}],
                          ['1 detection dropped: file_name is not an image of the annotations: '
                           '"holiday.jpg"']),
    "no image at all": ([{k: v for k, v in COPIES[1].items() if k != "image_id"}],
                        ["1 detection dropped: no image_id or file_name"]),
    "not an object": ([[30, 30, 40, 20, 0.9]], ["1 detection dropped: not a JSON object"]),
}


@pytest.mark.parametrize("case", DETECTION_CASES)
def test_unusable_detections_are_dropped_and_counted(case: str, tmp_path: Path) -> None:
    rows, expected = DETECTION_CASES[case]
    run, _, det = evaluate(tmp_path, coco(), COPIES + rows)
    assert run.code == 0, run.err
    assert warnings(run) == [f"eval_coco.py: warning: {det}: {line}" for line in expected]
    assert run.stats["AP"] == 1.0  # the copies alone
    assert run.counts == (2, 2)


def test_detections_by_file_name_get_their_image_ids(tmp_path: Path) -> None:
    rows = [{"file_name": "photos/a.jpg", "category_id": 1, "bbox": [10, 10, 20, 20],
             "score": 0.9},
            {"file_name": "b.jpg", "category_id": 2, "bbox": [30, 30, 40, 20], "score": 0.8}]
    run, _, _ = evaluate(tmp_path, coco(), rows)
    assert run.code == 0 and not warnings(run), run.err
    assert run.stats["AP"] == 1.0


def test_strict_refuses_unusable_detections(tmp_path: Path) -> None:
    rows = COPIES + [{**COPIES[1], "score": float("nan")}, {**COPIES[1], "category_id": 5}]
    run, _, det = evaluate(tmp_path, coco(), rows, "--strict")
    expect_error(run, f"{det}: detection 3: score is not a finite number: NaN (--strict; 2 "
                      "unusable entries in all)")


def test_no_usable_detection_is_an_error(tmp_path: Path) -> None:
    rows = [{**COPIES[0], "score": None}, {**COPIES[1], "image_id": 7}]
    run, _, det = evaluate(tmp_path, coco(), rows)
    expect_error(run, f"{det}: none of its 2 detections can be scored (first: detection 1: "
                      "score is not a finite number: null)")


def test_score_threshold_applies_after_the_checks(tmp_path: Path) -> None:
    run, _, det = evaluate(tmp_path, coco(), COPIES + [{**COPIES[0], "score": 7}], "-t", "0.85")
    assert run.code == 0, run.err
    assert warnings(run) == [f"eval_coco.py: warning: {det}: 1 detection dropped: score is "
                             "outside [0, 1]: 7"]
    assert run.counts == (2, 1)  # 0.8 is below the threshold
    assert run.stats["AP"] == 0.5  # one of the two categories found


# ---------------------------------------------------------------------------------------------
# A real run: the fixture model on photos, with bad entries added to real annotations


def test_model_run_counts_dropped_annotations(coco_dir: Path, tmp_path: Path) -> None:
    """The ONNX model on two photos scores the same with the unusable entries as without them,
    and says what it dropped; --strict refuses the file before the model runs."""
    label_map, clean = write_fixture_categories(coco_dir, tmp_path)
    data = json.loads(clean.read_text())
    photos = [image["file_name"] for image in data["images"][:2]]
    folder = link_images(coco_dir, tmp_path / "images", photos)
    first = data["images"][0]
    data["annotations"] += [
        {"id": 990001, "image_id": first["id"], "category_id": 91, "bbox": [1, 1, 20, 20]},
        {"id": 990002, "image_id": first["id"], "category_id": 1, "bbox": [1, 1, -20, 20]},
    ]
    dirty = write(tmp_path, "dirty.json", data)
    model = ("--onnx", converted_onnx(MODEL), "-i", folder, "-l", label_map)
    expected = run_cli(*model, "-a", clean)
    run = run_cli(*model, "-a", dirty)
    assert expected.code == run.code == 0, run.err
    assert warnings(run) == [
        f"eval_coco.py: warning: {dirty}: 1 annotation dropped: category_id is not in "
        "categories: 91",
        f"eval_coco.py: warning: {dirty}: 1 annotation dropped: bbox has zero or negative "
        "width or height"]
    assert run.stats == expected.stats and run.counts == expected.counts
    assert run.counts[1] > 0
    strict = run_cli(*model, "-a", dirty, "--strict")
    expect_error(strict, dirty, "category_id is not in categories: 91", "--strict")
