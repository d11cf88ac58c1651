"""Mask R-CNN's masks after the graph: placed in the photo as TFOD's
reframe_box_masks_to_image_masks places them, drawn and written as COCO RLE by infer.py, and
scored by eval_coco.py --iou_type segm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx, exported_model, have_tensorflow
from pycocotools import mask as mask_utils

import eval_coco
import infer
from tfod_trt.detect.masks import encode_rle, paste_mask
from tfod_trt.io.images import find_images, load_image
from tfod_trt.io.pictures import MASK_OPACITY, class_color, tint_masks
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.reference.tensorflow import TensorFlowRunner

MODEL = "mask_rcnn_r50_320"
PHOTOS = 2


def tfod_reframe(box_masks: np.ndarray, boxes: np.ndarray, height: int,
                 width: int) -> np.ndarray:
    """TFOD's own reframe_box_masks_to_image_masks, binarised as TFOD does (> 0.5)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from object_detection.utils import ops

    return ops.reframe_box_masks_to_image_masks(
        tf.constant(box_masks, tf.float32), tf.constant(boxes, tf.float32), height,
        width).numpy() > 0.5


@pytest.fixture(scope="module")
def photos(first_photos) -> Path:
    """A folder with links to the first PHOTOS photos."""
    return first_photos(PHOTOS)


def test_paste_mask_is_tfod_reframing() -> None:
    if not have_tensorflow():
        pytest.skip("TensorFlow and the TFOD API are absent")
    rng = np.random.default_rng(1)
    masks = rng.uniform(size=(12, 21, 21)).astype(np.float32)
    low = rng.uniform(0, 0.8, (12, 2))
    boxes = np.concatenate([low, np.minimum(low + rng.uniform(0.01, 0.6, (12, 2)), 1)], 1)
    boxes[0] = [0, 0, 1, 1]
    boxes[1] = [0.5, 0.5, 0.5, 0.6]  # no height: TFOD's 1e-4 floor
    boxes = boxes.astype(np.float32)
    expected = tfod_reframe(masks, boxes, 427, 640)
    ours = np.stack([paste_mask(m, b, 427, 640) for m, b in zip(masks, boxes, strict=True)])
    np.testing.assert_array_equal(ours, expected)
    assert 0.02 < expected.mean() < 0.5  # masks of many sizes, not empty


def test_tint_masks() -> None:
    image = np.full((4, 5, 3), 100, np.uint8)
    mask = np.zeros((1, 4, 5), bool)
    mask[0, 1:3, 2:4] = True
    tinted = tint_masks(image, mask, np.array([2]))
    expected = np.round((1 - MASK_OPACITY) * 100 + MASK_OPACITY * np.float32(class_color(2)))
    np.testing.assert_array_equal(tinted[1, 2], expected.astype(np.uint8))
    assert (tinted[~mask[0]] == 100).all()


def test_infer_writes_masks_as_rle(photos: Path, tmp_path: Path) -> None:
    """infer.py: each detection of detections.json has its mask as COCO RLE of the photo's
    size, TFOD's reframing of the graph's mask; the picture shows the masks."""
    if not have_tensorflow():
        pytest.skip("TensorFlow and the TFOD API are absent (the reference reframing)")
    onnx_path = converted_onnx(MODEL)
    assert infer.main(["--onnx", str(onnx_path), "-i", str(photos), "-o", str(tmp_path),
                       "-t", "0.3", "--serial"]) == 0
    rows = json.loads((tmp_path / "detections.json").read_text())
    assert len(rows) >= 10 * PHOTOS
    runner = ReferenceRunner(onnx_path)
    for photo in find_images(photos):
        found = [row for row in rows if row["file_name"] == photo.name]
        height, width = load_image(photo).shape[:2]
        masks = mask_utils.decode([row["segmentation"] for row in found]).transpose(2, 0, 1)
        assert masks.shape == (len(found), height, width) and masks.any(axis=(1, 2)).all()
        for row, mask in zip(found, masks, strict=True):  # inside its box (a pixel of slack)
            x, y, w, h = row["bbox"]
            outside = mask.copy()
            outside[max(int(y) - 1, 0):int(y + h) + 2, max(int(x) - 1, 0):int(x + w) + 2] = 0
            assert not outside.any()
        expected = graph_masks_in_photo(runner, photo, 0.3)
        assert len(expected) == len(found)
        assert (masks != expected).mean() < 1e-4  # pixel boxes back to normalised: rounding
    assert (tmp_path / f"{find_images(photos)[0].stem}.png").is_file()


def graph_masks_in_photo(runner: ReferenceRunner, photo: Path, threshold: float) -> np.ndarray:
    """The graph's masks of detections >= threshold, reframed by TFOD in the photo."""
    from tfod_trt.config.preprocessor import Preprocessor
    from tfod_trt.io.resize import preprocess

    image = load_image(photo)
    padded, scale = preprocess(image, Preprocessor.from_dict(runner.metadata["preprocessor"]))
    out = runner.infer(padded[None], np.float32([[scale.resized_height, scale.resized_width]]))
    keep = out["detection_scores"][0][: int(out["num_detections"][0, 0])] >= threshold
    return tfod_reframe(out["detection_masks"][0][: len(keep)][keep],
                        out["detection_boxes"][0][: len(keep)][keep], *image.shape[:2])


@pytest.fixture(scope="module")
def tf_masks(photos: Path) -> list[tuple[Path, np.ndarray, np.ndarray, np.ndarray]]:
    """TensorFlow on each photo: (photo, its detections >= 0.5: boxes normalised, classes
    0-based, masks reframed by TFOD in the photo)."""
    if not have_tensorflow():
        pytest.skip("TensorFlow and the TFOD API are absent (the annotations come from it)")
    tf_model = TensorFlowRunner(exported_model(MODEL) / "saved_model")
    found = []
    for photo in find_images(photos):
        height, width = load_image(photo).shape[:2]
        out = tf_model.infer_photos([photo])
        keep = out["detection_scores"][0] >= 0.5
        boxes = out["detection_boxes"][0][keep]
        masks = tfod_reframe(out["detection_masks"][0][keep], boxes, height, width)
        found.append((photo, boxes, out["detection_classes"][0][keep] - 1, masks))
    return found


def ground_truth(tf_masks: list, path: Path, invert: bool = False) -> Path:
    """Annotations of TensorFlow's detections and masks (``invert``: each mask's complement
    inside its box, the boxes unchanged)."""
    images, annotations = [], []
    for index, (photo, boxes, classes, masks) in enumerate(tf_masks, start=1):
        height, width = masks.shape[1:] if len(masks) else load_image(photo).shape[:2]
        images.append({"id": index, "file_name": photo.name, "height": height, "width": width})
        for box, mask, cls in zip(boxes, masks, classes, strict=True):
            y0, x0, y1, x1 = box * [height, width, height, width]
            if invert:
                inside = np.zeros_like(mask)
                inside[int(np.ceil(y0)):int(y1) + 1, int(np.ceil(x0)):int(x1) + 1] = True
                mask = inside & ~mask
            annotations.append({
                "id": len(annotations) + 1, "image_id": index, "category_id": int(cls) + 1,
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "segmentation": encode_rle(mask), "area": float(mask.sum()), "iscrowd": 0})
    categories = [{"id": i, "name": f"class {i - 1}"} for i in range(1, 5)]
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return path


def score(capsys, args: list[str]) -> tuple[float, str]:
    """eval_coco.py's AP (0.50:0.95), and what it printed."""
    assert eval_coco.main(args) == 0
    out = capsys.readouterr().out
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("AP "))), out


def test_eval_coco_segm_scores_the_masks(photos: Path, tf_masks: list, tmp_path: Path,
                                         capsys) -> None:
    """Annotated with TensorFlow's own detections and masks, the converted graph's masks score
    AP ~1 with --iou_type segm; with each annotation's mask inverted inside its box the boxes
    still score ~1 but the masks ~0. (The model runs once; its --results file is scored
    again.)"""
    truth = ground_truth(tf_masks, tmp_path / "truth.json")
    inverted = ground_truth(tf_masks, tmp_path / "inverted.json", invert=True)
    results = tmp_path / "results.json"
    model_ap, out = score(capsys, ["--onnx", str(converted_onnx(MODEL)), "-i", str(photos),
                                   "-a", str(truth), "--iou_type", "segm", "--results",
                                   str(results)])
    assert "segm: the IoU of the masks (Mask R-CNN), not of the boxes" in out
    found = {(name, iou_type): score(capsys, ["--detections", str(results), "-a", str(gt),
                                              "--iou_type", iou_type])[0]
             for name, gt in (("truth", truth), ("inverted", inverted))
             for iou_type in ("segm", "bbox")}
    print(model_ap, found)
    assert found["truth", "segm"] == model_ap >= 0.95
    assert found["truth", "bbox"] >= 0.95 and found["inverted", "bbox"] >= 0.95
    assert found["inverted", "segm"] <= 0.05


def test_segm_refuses_what_has_no_masks(photos: Path, tf_masks: list, tmp_path: Path,
                                        capsys) -> None:
    """A model without masks, annotations without segmentations, detections without RLE:
    one line each, exit 2, before any model runs where it can be told up front."""
    annotations = ground_truth(tf_masks, tmp_path / "gt.json")
    ssd = converted_onnx("ssd_mobilenet_v2")
    code = eval_coco.main(["--onnx", str(ssd), "-i", str(photos), "-a", str(annotations),
                           "--iou_type", "segm"])
    err = capsys.readouterr().err
    assert code == 2 and (f"{ssd}: --iou_type segm needs a model with masks (Mask R-CNN); this "
                          "one outputs no detection_masks") in err

    boxes_only = tmp_path / "boxes_only.json"
    data = json.loads(annotations.read_text())
    for ann in data["annotations"]:
        del ann["segmentation"]
    boxes_only.write_text(json.dumps(data))
    code = eval_coco.main(["--onnx", str(converted_onnx(MODEL)), "-i", str(photos), "-a",
                           str(boxes_only), "--iou_type", "segm"])
    err = capsys.readouterr().err
    assert code == 2 and (f"{boxes_only}: none of its {len(data['annotations'])} annotations "
                          "has a 'segmentation'; --iou_type segm needs instance masks") in err

    detections = tmp_path / "detections.json"
    name = find_images(photos)[0].name
    detections.write_text(json.dumps([{"file_name": name, "bbox": [1, 2, 30, 40],
                                       "score": 0.9, "category_id": 1}]))
    code = eval_coco.main(["--detections", str(detections), "-a", str(annotations),
                           "--iou_type", "segm"])
    err = capsys.readouterr().err
    assert code == 2 and "none of its 1 detections can be scored" in err
    assert "segmentation is missing or not COCO RLE" in err
