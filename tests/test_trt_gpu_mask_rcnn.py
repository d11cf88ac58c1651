"""Mask R-CNN on TensorRT (two EfficientNMS_TRT, two CropAndResize: the proposals' and the
detections', the mask stage, the true_image_shape input) against the CPU reference runner on the
same graph, real photos: boxes as Faster R-CNN's, and the masks of the matched detections.
Needs TensorRT and a GPU.

The graph may come with float16-stored weights (dev/gpu/gpu_carry.sh); it is then compared with
ONNX Runtime on that same graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_trt_gpu import BACKENDS, Reference, build, describe, image_folder, reference_detections

from tfod_trt.detect.batch import run_batch
from tfod_trt.detections import split_batch
from tfod_trt.evaluate.mask_agreement import MaskAgreement
from tfod_trt.evaluate.matching import SCORE_FLOOR, MatchResult, match_pairs, match_result
from tfod_trt.trt.runner import TrtRunner

pytestmark = pytest.mark.gpu

MODEL = "mask_rcnn_r50_320"
IMAGES = 8


@pytest.fixture(scope="module")
def mask_onnx(gpu: None) -> Path:
    from fixtures import converted_onnx

    return converted_onnx(MODEL)


@pytest.fixture(scope="module")
def mask_reference(mask_onnx: Path, coco_dir: Path, work_dir: Path) -> Reference:
    images = image_folder(coco_dir, work_dir / "mask_images", slice(0, IMAGES))
    return reference_detections(mask_onnx, images, IMAGES)


def compare_with_masks(engine: Path, backend: str, reference: Reference, min_iou: float,
                       max_score_diff: float) -> tuple[MatchResult, MaskAgreement]:
    """The reference's detections >= SCORE_FLOOR matched by the engine's, and the masks of the
    matched pairs."""
    boxes, masks = MatchResult(), MaskAgreement()
    with TrtRunner(engine, backend) as runner:
        assert runner.metadata["masks"]["output"] in runner.output_names
        for batch, expected in reference:
            for ref, test in zip(expected, split_batch(run_batch(runner, batch)), strict=False):
                ref, test = ref.above(SCORE_FLOOR), test.above(SCORE_FLOOR - max_score_diff)
                pairs = match_pairs(ref, test, min_iou, max_score_diff)
                boxes.add(match_result(ref, test, pairs))
                masks.add(ref, test, pairs)
    assert boxes.reference > 0, "the reference found nothing to compare"
    return boxes, masks


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_rcnn_fp32_matches_the_reference(mask_onnx: Path, work_dir: Path,
                                              mask_reference: Reference, backend: str) -> None:
    engine = build(mask_onnx, work_dir, "fp32")
    boxes, masks = compare_with_masks(engine, backend, mask_reference, 0.99, 1e-3)
    assert boxes.rate >= 0.99, describe(boxes)
    assert masks.pairs == boxes.matched and masks.mean_iou >= 0.99, masks.summary()
