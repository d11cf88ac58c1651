"""Dynamic-batch engines (create_onnx.py --batch_size -1, build_engine.py --batch_profile) on
TensorRT: the profile in ENGINE.json, any batch inside it (a partial last batch run at its
real size) matching the CPU reference runner on the same graph, INT8 through the calibrator's
calibration profile and through Q/DQ, and infer.py's batch sizes. Needs TensorRT and a GPU.

The graphs may come with float16-stored weights (dev/gpu/gpu_carry.sh); every comparison is
with ONNX Runtime on that same graph.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from test_trt_gpu import build, compare, describe, image_folder, reference_detections

import infer
from tfod_trt.detections import Detections
from tfod_trt.evaluate.matching import SCORE_FLOOR, MatchResult, match_detections
from tfod_trt.trt.engine_file import metadata_path
from tfod_trt.trt.runner import TrtRunner

pytestmark = pytest.mark.gpu

MODEL = "ssd_mobilenet_v2"
PROFILE = (1, 2, 4)  # MIN, OPT, MAX: small, so that the builds stay short
IMAGES = 10  # in batches of 3 and 4 the last batch is partial


def profile_flag() -> list[str]:
    return ["--batch_profile", ",".join(map(str, PROFILE))]


@pytest.fixture(scope="module")
def dynamic_onnx(gpu: None) -> Path:
    from fixtures import converted_onnx

    return converted_onnx(MODEL, -1)


@pytest.fixture(scope="module")
def images(coco_dir: Path, work_dir: Path) -> Path:
    return image_folder(coco_dir, work_dir / "dynamic_images", slice(0, IMAGES))


@pytest.fixture(scope="module")
def calibration_images(coco_dir: Path, work_dir: Path) -> Path:
    return image_folder(coco_dir, work_dir / "dynamic_calibration", slice(32, 40))


@pytest.fixture(scope="module")
def dynamic_engine(dynamic_onnx: Path, work_dir: Path) -> Path:
    return build(dynamic_onnx, work_dir, "fp32", *profile_flag())


def test_engine_records_its_profile(dynamic_engine: Path) -> None:
    metadata = json.loads(metadata_path(dynamic_engine).read_text())
    assert metadata["dynamic_batch"] is True and metadata["batch_size"] is None
    assert metadata["engine"]["profile"] == {
        "input_tensor": [[batch, 300, 300, 3] for batch in PROFILE]}
    with TrtRunner(dynamic_engine) as runner:
        assert runner.is_dynamic and runner.input_shape == (-1, 300, 300, 3)
        assert runner.profile_shapes == tuple((batch, 300, 300, 3) for batch in PROFILE)


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_any_batch_matches_the_reference(dynamic_engine: Path, dynamic_onnx: Path,
                                         images: Path, batch_size: int) -> None:
    """Batches of 1, 3 and 4 (the last batch of 3 and of 4 partial: it runs at its size)
    detect what the CPU reference runner detects on the graph."""
    reference = reference_detections(dynamic_onnx, images, IMAGES, batch_size)
    assert reference[-1][0].count < batch_size or batch_size == 1
    result = compare(dynamic_engine, "cuda-python", reference, SCORE_FLOOR, 0.99, 1e-3)
    assert result.rate >= 0.99, describe(result)


def test_keep_aspect_engine_profiles_the_true_image_shape(gpu: None, work_dir: Path,
                                                          images: Path) -> None:
    """The keep_aspect_ratio graph's second input gets the batch profile too."""
    from fixtures import converted_onnx

    onnx_path = converted_onnx("ssd_mobilenet_v2_keep_aspect", -1, "NCHW")
    engine = build(onnx_path, work_dir, "fp32", *profile_flag())
    profile = json.loads(metadata_path(engine).read_text())["engine"]["profile"]
    assert profile["true_image_shape"] == [[batch, 2] for batch in PROFILE]
    reference = reference_detections(onnx_path, images, IMAGES, 3)
    result = compare(engine, "cuda-python", reference, SCORE_FLOOR, 0.99, 1e-3)
    assert result.rate >= 0.99, describe(result)


@pytest.mark.parametrize("mode", ["calibrator", "qdq"])
def test_int8_builds_a_dynamic_engine(mode: str, dynamic_onnx: Path, work_dir: Path,
                                      calibration_images: Path, images: Path) -> None:
    """INT8 of a dynamic graph: the calibrator calibrates in a calibration profile at
    --calib_batch_size, Q/DQ calibrates the graph on ONNX Runtime; either engine keeps the
    profile and runs any batch in it (a random-weight network: only the shapes are checked)."""
    engine = build(dynamic_onnx, work_dir, "int8", "--int8_mode", mode, "--calib_input",
                   str(calibration_images), "--calib_batch_size", "2", *profile_flag())
    metadata = json.loads(metadata_path(engine).read_text())["engine"]
    assert metadata["int8_mode"] == mode and metadata["profile"]["input_tensor"][2][0] == 4
    reference = reference_detections(dynamic_onnx, images, IMAGES, 3)
    with TrtRunner(engine) as runner:
        for batch, _ in reference:
            outputs = runner.infer(batch.data[: batch.count])
            assert outputs["detection_boxes"].shape == (batch.count, 100, 4)
            assert np.all(outputs["num_detections"] >= 0)


def run_infer(*args: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = infer.main([str(a) for a in args])
    return code, err.getvalue()


# [x, y, w, h] @ CORNERS = [x1, y1, x2, y2]: IoU is the same in either axis order
CORNERS = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)


def per_image(records: list[dict]) -> dict[str, Detections]:
    """infer.py's detections.json -> each file's detections (boxes in pixels)."""
    rows: dict[str, list[dict]] = {}
    for record in records:
        rows.setdefault(record["file_name"], []).append(record)
    return {name: Detections(np.array([r["bbox"] for r in found], np.float32).reshape(-1, 4)
                             @ CORNERS, np.array([r["score"] for r in found], np.float32),
                             np.array([r["category_id"] for r in found]))
            for name, found in rows.items()}


def test_infer_takes_batch_sizes_up_to_the_profile(dynamic_engine: Path, images: Path,
                                                   tmp_path: Path) -> None:
    """infer.py -b 3 detects what -b 1 detects; -b 8, beyond the profile, is one line."""
    found = {}
    for batch in ("1", "3"):
        code, err = run_infer("-e", dynamic_engine, "-i", images, "-o", tmp_path / batch,
                              "--no_pictures", "-b", batch)
        assert code == 0, err
        found[batch] = per_image(json.loads((tmp_path / batch / "detections.json").read_text()))
    assert sorted(found["3"]) == sorted(found["1"])
    result = MatchResult()
    for name, expected in found["1"].items():
        result.add(match_detections(expected.above(SCORE_FLOOR),
                                    found["3"][name].above(SCORE_FLOOR - 1e-3), 0.99, 1e-3))
    assert result.reference > 0 and result.rate >= 0.99, describe(result)
    code, err = run_infer("-e", dynamic_engine, "-i", images, "-o", tmp_path / "8",
                          "--no_pictures", "-b", "8")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"infer.py: error: {dynamic_engine}: --batch_size 8: the engine's optimisation profile "
        "takes 1 to 4 images per batch (build_engine.py --batch_profile MIN,OPT,MAX sets it)")
