"""Dynamic-batch graphs (create_onnx.py --batch_size -1) on the CPU: the symbolic batch of the
graph and its metadata, the same detections as the static graph at any batch (the reference
runtime, infer.py, eval_coco.py), the INT8 Q/DQ and FP16 copies, benchmark.py's batch sizes,
build_engine.py's --batch_profile, and the one-line refusals of bad batch sizes and profiles.
The TensorRT side is in tests/test_trt_gpu.py."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures import converted_onnx, exported_model
from test_eval_coco import write_fixture_categories

import benchmark
import build_engine
import create_onnx
import eval_coco
import infer
import quantize
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.detect.batch import detect_folder, dynamic_batch_range, rows_to_run
from tfod_trt.detect.results import ImageResult
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.metadata import BATCH_DIM, read_metadata, static_batch_size
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.trt.batch_profile import DEFAULT_BATCH_PROFILE, profile_shapes
from tfod_trt.trt.build_options import BuildError

# (fixture, layout) of every SSD preset the project converts, each with its static graph
SSD_CASES = [("ssd_mobilenet_v2", "NHWC"), ("ssd_mobilenet_v2_keep_aspect", "NCHW"),
             ("ssd_fpnlite_320", "NHWC"), ("ssd_resnet50_fpn_640", "NHWC")]
PHOTOS = 4  # with batches of 3: one full batch and a partial one


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def graph_dims(path: Path) -> dict[str, list[int | str]]:
    model = onnx.load(str(path), load_external_data=False)
    return {v.name: dims(v) for v in [*model.graph.input, *model.graph.output]}


@pytest.fixture(scope="module")
def photos(first_photos) -> Path:
    """A folder of the first PHOTOS photos."""
    return first_photos(PHOTOS)


def run_quietly(main, *args: object) -> tuple[int, str]:
    """A script's main with its output captured: (exit code, stderr); argparse's own errors
    end in SystemExit."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
    return code, err.getvalue()


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# The graph


@pytest.mark.parametrize("name,layout", SSD_CASES)
def test_every_input_and_output_has_the_symbolic_batch(name: str, layout: str) -> None:
    """The same tensors as the static graph, their batch dimension named 'batch'; the metadata
    says so and is otherwise the static graph's."""
    static, dynamic = converted_onnx(name, 1, layout), converted_onnx(name, -1, layout)
    expected = {tensor: [BATCH_DIM, *shape[1:]] for tensor, shape in graph_dims(static).items()}
    assert graph_dims(dynamic) == expected
    static_meta, meta = read_metadata(static), read_metadata(dynamic)
    assert meta["batch_size"] is None and meta["dynamic_batch"] is True
    assert static_batch_size(meta) is None and static_batch_size(static_meta) == 1
    assert {k: v for k, v in meta.items() if k not in ("batch_size", "dynamic_batch")} == {
        k: v for k, v in static_meta.items() if k not in ("batch_size", "dynamic_batch")}


def results_at(model: Path | ReferenceRunner, photos: Path,
               batch_size: int) -> list[ImageResult]:
    runner = model if isinstance(model, ReferenceRunner) else ReferenceRunner(model)
    meta = runner.metadata
    batcher = ImageBatcher(photos, Preprocessor.from_dict(meta["preprocessor"]), batch_size,
                           layout=meta["input_format"])
    return list(detect_folder(runner, batcher))


def assert_same_results(expected: list[ImageResult], found: list[ImageResult]) -> None:
    assert [r.path.name for r in found] == [r.path.name for r in expected]
    for want, got in zip(expected, found, strict=True):
        assert len(got) == len(want) > 0, want.path.name
        assert got.classes.tolist() == want.classes.tolist(), want.path.name
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=1e-3)  # pixels


@pytest.mark.parametrize("name,layout", [
    *SSD_CASES[:3], pytest.param(*SSD_CASES[3], marks=pytest.mark.slow)])  # ResNet: ~45 s
def test_detections_equal_the_static_graphs_at_any_batch(name: str, layout: str,
                                                         photos: Path) -> None:
    """Batches of 1 and of 3 (the last one partial) on the CPU reference runtime detect what
    the static batch-1 graph does on the same photos."""
    expected = results_at(converted_onnx(name, 1, layout), photos, 1)
    dynamic = ReferenceRunner(converted_onnx(name, -1, layout))
    for batch_size in (1, 3):
        assert_same_results(expected, results_at(dynamic, photos, batch_size))


def test_a_partial_batch_runs_without_its_padding(photos: Path) -> None:
    """The reference runtime takes any batch: the padding rows of a partial batch are not
    run; a static graph runs its whole batch."""
    dynamic = ReferenceRunner(converted_onnx("ssd_mobilenet_v2", -1))
    static = ReferenceRunner(converted_onnx("ssd_mobilenet_v2", 4, "NCHW"))
    assert dynamic_batch_range(dynamic) == (1, None) and dynamic_batch_range(static) is None
    pre = Preprocessor.from_dict(dynamic.metadata["preprocessor"])
    (batch, last) = ImageBatcher(photos, pre, 3)
    assert (rows_to_run(dynamic, batch), rows_to_run(dynamic, last)) == (3, 1)
    (whole,) = ImageBatcher(photos, pre, 4, layout="NCHW")
    assert rows_to_run(static, whole) == 4


# ---------------------------------------------------------------------------------------------
# infer.py and eval_coco.py


def detections_json(folder: Path) -> list[dict]:
    return json.loads((folder / "detections.json").read_text())


def assert_same_records(expected: list[dict], found: list[dict]) -> None:
    assert [(r["file_name"], r["category_id"]) for r in found] == [
        (r["file_name"], r["category_id"]) for r in expected]
    for want, got in zip(expected, found, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert got["bbox"] == pytest.approx(want["bbox"], abs=1e-2)


@pytest.mark.parametrize("name,layout", SSD_CASES[:2])
def test_infer_runs_the_dynamic_graph_at_any_batch_size(name: str, layout: str, photos: Path,
                                                        tmp_path: Path) -> None:
    """infer.py --onnx DYNAMIC -b N (pipelined and serial) writes the static graph's
    detections."""
    def run(onnx_path: Path, output: str, *extra: str) -> list[dict]:
        code, err = run_quietly(infer.main, "--onnx", onnx_path, "-i", photos,
                                "-o", tmp_path / output, "--no_pictures", "--decode", "threads",
                                *extra)
        assert code == 0, err
        return detections_json(tmp_path / output)

    expected = run(converted_onnx(name, 1, layout), "static")
    assert expected
    dynamic = converted_onnx(name, -1, layout)
    for extra in (["-b", "1"], ["-b", "3"], ["-b", "3", "--serial"], ["-b", "8"]):
        assert_same_records(expected, run(dynamic, "_".join(extra), *extra))


def test_eval_coco_takes_a_batch_size(photos: Path, coco_dir: Path, tmp_path: Path) -> None:
    """eval_coco.py -b 3 on the dynamic graph scores what the static graph scores; a static
    graph refuses another batch size in one line."""
    label_map, annotations = write_fixture_categories(coco_dir, tmp_path)

    def run(onnx_path: Path, *extra: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = eval_coco.main([str(a) for a in ("--onnx", onnx_path, "-i", photos, "-a",
                                                    annotations, "-l", label_map, *extra)])
        return code, out.getvalue(), err.getvalue()

    static = converted_onnx("ssd_mobilenet_v2")
    code, expected, err = run(static)
    assert code == 0, err
    code, found, err = run(converted_onnx("ssd_mobilenet_v2", -1), "-b", "3")
    assert code == 0, err
    assert found.split("\n", 1)[1] == expected.split("\n", 1)[1]  # the lines after the name
    code, _, err = run(static, "-b", "3")
    assert code == 2 and last_line(err) == (
        f"eval_coco.py: error: {static}: --batch_size 3: the model's batch size is fixed at 1; "
        "use --batch_size 1 or convert the model with --batch_size 3")


# ---------------------------------------------------------------------------------------------
# Q/DQ INT8, FP16, validation and benchmarks


@pytest.mark.parametrize("mode", ["int8", "fp16"])
def test_quantized_copies_keep_the_dynamic_batch(mode: str, photos: Path,
                                                 tmp_path: Path) -> None:
    """quantize.py keeps the symbolic batch, and the copy runs at batch 3 as at batch 1."""
    dynamic = converted_onnx("ssd_mobilenet_v2", -1)
    output = tmp_path / f"model.{mode}.onnx"
    calibration = ["--calib_input", photos] if mode == "int8" else []
    code, err = run_quietly(quantize.main, "-o", dynamic, "--output", output, "-m", mode,
                            *calibration)
    assert code == 0, err
    assert graph_dims(output) == graph_dims(dynamic)
    typed = ReferenceRunner(output)
    assert_same_results(results_at(typed, photos, 1), results_at(typed, photos, 3))


def test_validate_compares_the_dynamic_graph_in_batches(coco_dir: Path) -> None:
    """--validate on a dynamic graph runs it on batches of several images against the
    SavedModel and passes."""
    from tfod_trt.evaluate.parity import validate

    report = validate(exported_model("ssd_mobilenet_v2") / "saved_model",
                      converted_onnx("ssd_mobilenet_v2", -1), coco_dir / "images", 6)
    assert report.images == 6 and report.passed, report.summary()


def test_benchmark_times_a_dynamic_graph_at_each_batch_size(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code, err = run_quietly(benchmark.main, "--onnx", converted_onnx("ssd_mobilenet_v2", -1),
                            "--batch_size", "1", "3", "--warmup", "0", "--duration", "0",
                            "--iterations", "2", "--json", out)
    assert code == 0, err
    results = json.loads(out.read_text())["results"]
    assert [(r["batch"], r["input_shape"], r["dynamic"]) for r in results] == [
        (1, [1, 300, 300, 3], True), (3, [3, 300, 300, 3], True)]


def test_benchmark_refuses_batches_beyond_an_engines_profile(tmp_path: Path) -> None:
    """Checked on the engine's metadata (build_engine.py's ENGINE.json) before TensorRT."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine")
    shapes = [[batch, 300, 300, 3] for batch in (1, 8, 16)]
    Path(f"{engine}.json").write_text(json.dumps({"engine": {"profile": {
        "input_tensor": shapes}}}))
    code, err = run_quietly(benchmark.main, "-e", engine, "--batch_size", "8", "32")
    assert code == 2 and last_line(err) == (
        f"benchmark.py: error: --batch_size 32: {engine} takes batches of 1 to 16 (its "
        "optimization profile, build_engine.py --batch_profile)")


# ---------------------------------------------------------------------------------------------
# build_engine.py's profile


def test_default_profile_covers_the_image_and_the_true_image_shape() -> None:
    path = converted_onnx("ssd_mobilenet_v2_keep_aspect", -1, "NCHW")
    shapes = profile_shapes(onnx.load(str(path), load_external_data=False), path)
    low, opt, high = DEFAULT_BATCH_PROFILE
    assert shapes == {
        "input_tensor": ((low, 3, 320, 320), (opt, 3, 320, 320), (high, 3, 320, 320)),
        "true_image_shape": ((low, 2), (opt, 2), (high, 2))}
    chosen = profile_shapes(onnx.load(str(path), load_external_data=False), path, (2, 3, 5))
    assert [shape[0] for shape in chosen["true_image_shape"]] == [2, 3, 5]
    static = converted_onnx("ssd_mobilenet_v2")
    assert profile_shapes(onnx.load(str(static), load_external_data=False), static) == {}


def test_inputs_dynamic_beyond_the_batch_are_refused(tmp_path: Path) -> None:
    """TensorRT needs a range for every dynamic dimension; build_engine.py knows only the
    batch's."""
    model = onnx.load(str(converted_onnx("ssd_mobilenet_v2", -1)), load_external_data=False)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "height"
    with pytest.raises(BuildError, match=r"x.onnx: inputs with dynamic dimensions besides the "
                                         r"batch \(input_tensor \['\?', '\?', 300, 3\]\)"):
        profile_shapes(model, tmp_path / "x.onnx")


@pytest.mark.parametrize("case,args,message", [
    ("MIN above OPT", ["--batch_profile", "8,4,16"],
     "argument --batch_profile: '8,4,16': give three batch sizes MIN,OPT,MAX with 1 <= MIN "
     "<= OPT <= MAX, e.g. 1,8,16"),
    ("zero", ["--batch_profile", "0,1,2"], "argument --batch_profile: '0,1,2': give three"),
    ("two numbers", ["--batch_profile", "1,8"], "argument --batch_profile: '1,8': give three"),
    ("static graph", ["--batch_profile", "1,4,16"],
     "--batch_profile 1,4,16: {static} has a static batch of 1, so its engine takes no other; "
     "convert it with create_onnx.py --batch_size -1 for a dynamic batch"),
])
def test_bad_profiles_are_refused_before_tensorrt(case: str, args: list[str], message: str,
                                                  tmp_path: Path) -> None:
    static = converted_onnx("ssd_mobilenet_v2")
    onnx_path = static if case == "static graph" else converted_onnx("ssd_mobilenet_v2", -1)
    code, err = run_quietly(build_engine.main, "-o", onnx_path, "-e", tmp_path / "x.engine",
                            *args)
    assert code == 2 and last_line(err).startswith(
        "build_engine.py: error: " + message.format(static=static)), err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# create_onnx.py's batch size


@pytest.mark.parametrize("batch", ["0", "-2"])
def test_create_onnx_refuses_other_batch_sizes(batch: str, tmp_path: Path) -> None:
    code, err = run_quietly(create_onnx.main, "-p", tmp_path / "pipeline.config",
                            "-m", tmp_path, "-o", tmp_path / "x.onnx", "-b", batch)
    assert code == 2 and last_line(err) == (
        f"create_onnx.py: error: --batch_size {batch}: give a batch size of at least 1, or -1 "
        "for a dynamic batch")
