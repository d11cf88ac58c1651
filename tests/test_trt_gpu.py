"""Engines built by build_engine.py and run by trt_runner.TrtRunner on an NVIDIA GPU, compared
with the CPU reference runner on real photos. Needs TensorRT and a GPU: skipped elsewhere.

Engine builds are slow (minutes each on TensorRT 8.6): each is built once per session. Set
TFOD_TRT_ENGINE_CACHE to a folder to keep engines between sessions on one machine; they are
keyed by the ONNX, the build code, the TensorRT version and the build options.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import build_engine
import trt_compat
import trt_runner
from image_batcher import ImageBatcher, Preprocessor, find_images
from parity import SCORE_FLOOR, Detections, MatchResult, match_detections, split_batch

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
MODEL = "ssd_mobilenet_v2"
TEST_IMAGES = 16
CALIB_FIRST_IMAGE = 32  # calibration images come from the other end of the folder
BACKENDS = ("cuda-python", "pycuda")


@pytest.fixture(scope="session")
def gpu() -> None:
    """Skips unless TensorRT imports and a CUDA back-end finds a GPU."""
    try:
        trt_compat.require_tensorrt()
    except trt_compat.TensorRTUnavailable as err:
        pytest.skip(str(err))
    try:
        backend = trt_runner.make_backend("auto")
    except (ImportError, trt_runner.NoGpuError, trt_runner.CudaError) as err:
        pytest.skip(f"no GPU to run TensorRT on: {err}")
    backend.close()


@pytest.fixture(scope="session")
def onnx_path(gpu: None) -> Path:
    from fixtures import converted_onnx  # the lead's fixture models (cached ONNX on the GPU)

    return converted_onnx(MODEL)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cached = os.environ.get("TFOD_TRT_ENGINE_CACHE")
    if cached:
        Path(cached).mkdir(parents=True, exist_ok=True)
        return Path(cached)
    return tmp_path_factory.mktemp("trt")


def image_folder(coco_dir: Path, target: Path, images: slice) -> Path:
    """A folder of links to a slice of the COCO photos (ImageBatcher reads whole folders)."""
    target.mkdir(exist_ok=True)
    for image in find_images(coco_dir / "images")[images]:
        link = target / image.name
        if not link.exists():
            link.symlink_to(image.resolve())
    return target


@pytest.fixture(scope="session")
def test_images(coco_dir: Path, work_dir: Path) -> Path:
    return image_folder(coco_dir, work_dir / "test_images", slice(0, TEST_IMAGES))


@pytest.fixture(scope="session")
def calib_images(coco_dir: Path, work_dir: Path) -> Path:
    return image_folder(coco_dir, work_dir / "calib_images", slice(CALIB_FIRST_IMAGE, None))


def cache_key(onnx_path: Path, args: list[str]) -> str:
    digest = hashlib.sha256(onnx_path.read_bytes())
    for source in ("build_engine.py", "trt_compat.py"):
        digest.update((ROOT / source).read_bytes())
    digest.update(" ".join([trt_compat.version_string(), *args]).encode())
    return digest.hexdigest()[:16]


def build(onnx_path: Path, work_dir: Path, precision: str, *extra: str) -> Path:
    """Runs build_engine.py (once per key) with a shared timing cache."""
    args = ["-p", precision, *extra]
    engine = work_dir / f"{onnx_path.stem}_{precision}_{cache_key(onnx_path, args)}.engine"
    if not engine.is_file():
        code = build_engine.main(["-o", str(onnx_path), "-e", str(engine), *args,
                                  "--timing_cache", str(work_dir / "timing.cache")])
        assert code == 0, f"build_engine.py failed for {precision}"
    assert trt_runner.metadata_path(engine).is_file()
    return engine


@pytest.fixture(scope="session")
def fp32_engine(onnx_path: Path, work_dir: Path) -> Path:
    return build(onnx_path, work_dir, "fp32")


@pytest.fixture(scope="session")
def fp16_engine(onnx_path: Path, work_dir: Path) -> Path:
    return build(onnx_path, work_dir, "fp16")


@pytest.fixture(scope="session")
def int8_engine(onnx_path: Path, work_dir: Path, calib_images: Path) -> Path:
    cache = work_dir / f"{onnx_path.stem}_int8.cache"
    engine = build(onnx_path, work_dir, "int8", "--calib_input", str(calib_images),
                   "--calib_cache", str(cache))
    assert cache.is_file() and cache.stat().st_size > 0
    return engine


Reference = list[tuple[np.ndarray, list[Detections]]]


@pytest.fixture(scope="session")
def reference(onnx_path: Path, test_images: Path) -> Reference:
    """(batch, the CPU reference runner's detections per real image) for the test photos."""
    from reference_runner import ReferenceRunner

    runner = ReferenceRunner(onnx_path)
    meta = runner.metadata
    batcher = ImageBatcher(test_images, Preprocessor.from_dict(meta["preprocessor"]),
                           batch_size=meta["batch_size"], layout=meta["input_format"])
    batches = [(b.data, split_batch(runner.infer(b.data))[: b.count]) for b in batcher]
    assert sum(len(d) for _, d in batches) == TEST_IMAGES
    return batches


def compare(engine: Path, backend: str, reference: Reference, floor: float, min_iou: float,
            max_score_diff: float, use_cuda_graph: bool = False) -> MatchResult:
    """Reference detections with score >= floor matched by the engine's (a score tolerance
    below the floor on the engine's side, so that no pair is lost at the floor)."""
    result = MatchResult()
    with trt_runner.TrtRunner(engine, backend, use_cuda_graph=use_cuda_graph) as runner:
        for data, expected in reference:
            found = split_batch(runner.infer(data))
            for ref, test in zip(expected, found, strict=False):
                result.add(match_detections(ref.above(floor),
                                            test.above(max(floor - max_score_diff, 0.0)),
                                            min_iou, max_score_diff))
    assert result.reference > 0, "the reference found nothing to compare"
    return result


def describe(result: MatchResult) -> str:
    return (f"{result.matched}/{result.reference} matched ({100 * result.rate:.2f}%), min IoU "
            f"{result.min_iou:.4f}, max |score diff| {result.max_score_diff:.2e}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_matches_the_reference(fp32_engine: Path, reference: Reference,
                                    backend: str) -> None:
    result = compare(fp32_engine, backend, reference, SCORE_FLOOR, 0.99, 1e-3)
    assert result.rate >= 0.99, describe(result)


@pytest.mark.xfail(strict=False, reason=(
    "measured 2026-11-24 on TensorRT 8.6.0 / H100 with the random-weight fixture (recipe v3): "
    "56.9% matched at IoU 0.9 (92.0% at IoU 0.5, |score diff| up to 0.25); FP32 100%. A random "
    "network is too ill-conditioned for FP16; judged again on the trained model of issue 7"))
@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_matches_the_reference(fp16_engine: Path, reference: Reference,
                                    backend: str) -> None:
    result = compare(fp16_engine, backend, reference, SCORE_FLOOR, 0.9, 1e-2)
    assert result.rate >= 0.97, describe(result)


@pytest.mark.xfail(strict=False, reason=(
    "measured 2026-11-24 on TensorRT 8.6.0 / H100 with the random-weight fixture (recipe v3, "
    "2-100 detections >= 0.3 per image): 55.4% of the reference's detections >= 0.3 matched at "
    "IoU 0.5 (scores off by up to 0.63). Judged again on the trained model of issue 7"))
def test_int8_calibrated_on_other_images_matches_confident_detections(
        int8_engine: Path, reference: Reference) -> None:
    result = compare(int8_engine, "cuda-python", reference, 0.3, 0.5, 1.0)
    assert result.rate >= 0.90, describe(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_graph_replays_or_falls_back(fp32_engine: Path, reference: Reference,
                                          backend: str) -> None:
    """cuda-python captures a graph; pycuda (no graph API) falls back; both stay correct."""
    result = compare(fp32_engine, backend, reference, SCORE_FLOOR, 0.99, 1e-3,
                     use_cuda_graph=True)
    assert result.rate >= 0.99, describe(result)
    data = reference[0][0]
    with trt_runner.TrtRunner(fp32_engine, backend, use_cuda_graph=True) as runner:
        first, second = runner.infer(data), runner.infer(data)
        assert runner.use_cuda_graph == (backend == "cuda-python")
    assert first["num_detections"].tolist() == second["num_detections"].tolist()


def test_runner_describes_the_engine(fp32_engine: Path, onnx_path: Path) -> None:
    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    with trt_runner.TrtRunner(fp32_engine) as runner:
        assert runner.input_shape == dims and not runner.is_dynamic
        assert runner.input_dtype == np.float32 and runner.batch_size == dims[0]
        assert runner.metadata["engine"]["precision"] == "fp32"
        assert runner.metadata["engine"]["tensorrt_version"] == trt_compat.version_string()
        assert runner.metadata["preprocessor"]["height"] in dims
        outputs = runner.infer(np.zeros(dims, np.float32))
        with pytest.raises(ValueError, match="takes shape"):
            runner.infer(np.zeros((dims[0] + 1, *dims[1:]), np.float32))
    assert {"num_detections", "detection_boxes", "detection_scores",
            "detection_classes"} <= set(outputs)
    assert outputs["num_detections"].dtype == np.int32


@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_damaged_engine_gives_a_clear_error(fp32_engine: Path, tmp_path: Path,
                                            damage: str) -> None:
    broken = tmp_path / "broken.engine"
    data = bytearray(fp32_engine.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[:64] = bytes(64)
    broken.write_bytes(bytes(data))
    shutil.copy(trt_runner.metadata_path(fp32_engine), trt_runner.metadata_path(broken))
    with pytest.raises(trt_runner.EngineError) as err:
        trt_runner.TrtRunner(broken)
    message = str(err.value)
    assert str(broken) in message and trt_compat.version_string() in message
    assert "rebuild with build_engine.py" in message


def test_dynamic_batch_engine(gpu: None, tmp_path: Path) -> None:
    """An engine with an optimization profile: any batch in range, refused outside it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"], name="double")],
                              "dynamic", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "dynamic.onnx")
    builder = build_engine.EngineBuilder()
    builder.create_network(tmp_path / "dynamic.onnx")
    builder.add_profile({"x": ((1, 8), (2, 8), (4, 8))})
    engine = tmp_path / "dynamic.engine"
    engine.write_bytes(builder.build(build_engine.BuildOptions(workspace_gib=1)))
    with trt_runner.TrtRunner(engine) as runner:
        assert runner.is_dynamic and runner.input_shape == (-1, 8) and runner.batch_size == 4
        for batch in (3, 1, 4):
            data = np.arange(batch * 8, dtype=np.float32).reshape(batch, 8)
            np.testing.assert_array_equal(runner.infer(data)["y"], 2 * data)
        with pytest.raises(ValueError, match=r"\(1, 8\) \.\. \(4, 8\)"):
            runner.infer(np.zeros((5, 8), np.float32))
