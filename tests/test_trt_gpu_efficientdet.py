"""EfficientDet D0 on TensorRT (EfficientNet + BiFPN, swish as Sigmoid x Mul, the
true_image_shape input) against the CPU reference runner on the same graph, real photos. Needs
TensorRT and a GPU.

The graph may come with float16-stored weights (a smaller file to copy to a TensorRT machine: see
dev/gpu/onnx_half_weights.py); it is then compared with ONNX Runtime on that same graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_trt_gpu import (
    BACKENDS,
    Reference,
    build,
    compare,
    describe,
    image_folder,
    reference_detections,
)

from tfod_trt.evaluate.matching import SCORE_FLOOR
from tfod_trt.trt.runner import TrtRunner

pytestmark = pytest.mark.gpu

MODEL = "ssd_efficientdet_d0"
IMAGES = 8


@pytest.fixture(scope="module")
def effdet_onnx(gpu: None) -> Path:
    from fixtures import converted_onnx

    return converted_onnx(MODEL)


@pytest.fixture(scope="module")
def effdet_reference(effdet_onnx: Path, coco_dir: Path, work_dir: Path) -> Reference:
    images = image_folder(coco_dir, work_dir / "effdet_images", slice(0, IMAGES))
    return reference_detections(effdet_onnx, images, IMAGES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_efficientdet_fp32_matches_the_reference(effdet_onnx: Path, work_dir: Path,
                                                 effdet_reference: Reference,
                                                 backend: str) -> None:
    engine = build(effdet_onnx, work_dir, "fp32")
    with TrtRunner(engine, backend) as runner:
        assert runner.needs_true_image_shape
    result = compare(engine, backend, effdet_reference, SCORE_FLOOR, 0.99, 1e-3)
    print(f"{MODEL} FP32: {describe(result)}")
    assert result.rate >= 0.99, describe(result)


def test_efficientdet_fp16_confident_detections(effdet_onnx: Path, work_dir: Path,
                                                effdet_reference: Reference) -> None:
    """FP16: the reference's confident detections (>= 0.3) found at IoU >= 0.5 with scores
    within 0.1; the strict FP32 criterion is printed too, for the record."""
    engine = build(effdet_onnx, work_dir, "fp16")
    strict = compare(engine, "cuda-python", effdet_reference, SCORE_FLOOR, 0.99, 1e-3)
    result = compare(engine, "cuda-python", effdet_reference, 0.3, 0.5, 0.1)
    print(f"{MODEL} FP16: strict {describe(strict)}; confident {describe(result)}")
    assert result.rate >= 0.9, describe(result)
