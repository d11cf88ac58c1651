"""export_triton.py: a detector's models in a Triton model repository (configs checked by
Triton's own ModelConfig schema in the serving environment), the request-level pre- and
postprocessing against infer.py's, the package copy the Python models run, and bad input."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures import converted_onnx, trained_onnx
from onnx import TensorProto, helper
from triton_server import run_tool

import export_triton
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.io.processes import decode_processes
from tfod_trt.metadata import read_metadata
from tfod_trt.serve.detector_io import io_from_metadata, io_from_onnx
from tfod_trt.serve.interface import IMAGE_ERROR, IMAGE_SCALE, RESULTS, unpack_answer
from tfod_trt.serve.postprocess import PostprocessSettings, postprocess_request
from tfod_trt.serve.preprocess import PreprocessSettings, preprocess_request

FIXTURE_GRAPHS = {  # name -> (fixture, batch, layout)
    "b4_nchw": ("ssd_mobilenet_v2", 4, "NCHW"),
    "keep_aspect_nchw": ("ssd_mobilenet_v2_keep_aspect", 1, "NCHW"),
}


def fixture_graph(key: str) -> Path:
    if key == "trained":
        return trained_onnx()
    name, batch, layout = FIXTURE_GRAPHS[key]
    return converted_onnx(name, batch, layout)


def fake_engine(folder: Path, onnx_path: Path, profile: dict | None = None) -> Path:
    """An engine file and the <engine>.json build_engine.py would write beside it (the ONNX's
    metadata and an "engine" entry); the plan's bytes are only copied, never read."""
    engine = folder / f"{onnx_path.stem}.engine"
    engine.write_bytes(b"serialized engine")
    metadata = {**read_metadata(onnx_path),
                "engine": {"onnx": str(onnx_path), "precision": "fp16",
                           "tensorrt_version": "10.13.0", "profile": profile}}
    Path(f"{engine}.json").write_text(json.dumps(metadata))
    return engine


def export(*args: str | Path) -> int:
    return export_triton.main([str(arg) for arg in args])


def settings_of(config: dict) -> dict:
    return json.loads(config["parameters"]["settings"]["stringValue"])


def dims(tensors: list[dict]) -> dict[str, list[int]]:
    """name -> dims of a parsed config's inputs or outputs."""
    return {t["name"]: [int(d) for d in t["dims"]] for t in tensors}


# ---------------------------------------------------------------------------------------------
# what the detector takes and gives


@pytest.mark.parametrize("key", ["trained", *FIXTURE_GRAPHS])
def test_metadata_describes_the_graphs_tensors(key: str) -> None:
    """The I/O read from the metadata (what an engine's json holds) is the graph's own."""
    path = fixture_graph(key)
    model = onnx.load(str(path), load_external_data=False)
    assert io_from_metadata(read_metadata(model), path) == io_from_onnx(model, path)


# ---------------------------------------------------------------------------------------------
# the repository, parsed by Triton's ModelConfig schema


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One repository: a static-batch engine, a dynamic-batch engine and an ONNX stand-in,
    its configs as Triton's ModelConfig parses them."""
    folder = tmp_path_factory.mktemp("exported")
    repo = folder / "repo"
    graph = fixture_graph("b4_nchw")
    static = fake_engine(folder, graph)
    dynamic_folder = folder / "dynamic"
    dynamic_folder.mkdir()
    shape = [3, 300, 300]
    dynamic = fake_engine(dynamic_folder, graph, {"input_tensor": [[1, *shape], [4, *shape],
                                                                   [8, *shape]]})
    labels = folder / "labels.txt"
    labels.write_text("person\n\ncarré \"A\"\n", encoding="utf-8")
    assert export("--engine", static, "--repo", repo, "--name", "static", "--labels", labels,
                  "--instances", "2", "--pre_post_instances", "3", "-t", "0.25") == 0
    assert export("--engine", dynamic, "--repo", repo, "--name", "dynamic") == 0
    assert export("--onnx", fixture_graph("keep_aspect_nchw"), "--repo", repo) == 0
    return {"repo": repo, "engine": static, "configs": run_tool("configs", str(repo))}


def test_repository_holds_four_models_per_detector(exported: dict) -> None:
    stand_in = fixture_graph("keep_aspect_nchw").stem
    names = {f"{n}{suffix}" for n in ("static", "dynamic", stand_in)
             for suffix in ("", "_preprocess", "_detector", "_postprocess")}
    assert set(exported["configs"]) == names
    assert sorted(p.name for p in exported["repo"].iterdir()) == sorted(names)  # nothing else
    assert (exported["repo"] / "static_detector" / "1" / "model.plan").read_bytes() == (
        exported["engine"].read_bytes())
    assert (exported["repo"] / "static" / "1").is_dir()  # an ensemble's empty version


def test_static_engine_is_a_plan_of_its_full_dims(exported: dict) -> None:
    config = exported["configs"]["static_detector"]
    assert config["platform"] == "tensorrt_plan" and "maxBatchSize" not in config  # 0
    assert dims(config["input"]) == {"input_tensor": [4, 3, 300, 300]}
    assert dims(config["output"]) == {"num_detections": [4, 1], "detection_boxes": [4, 100, 4],
                                      "detection_scores": [4, 100],
                                      "detection_classes": [4, 100]}
    assert {t["name"]: t["dataType"] for t in config["output"]}["num_detections"] == "TYPE_INT32"
    assert config["instanceGroup"] == [{"count": 2, "kind": "KIND_GPU"}]
    assert "dynamicBatching" not in config


def test_dynamic_engine_batches_up_to_its_profiles_max(exported: dict) -> None:
    """Every model of a dynamic-batch engine batches: one image's dims, max_batch_size = the
    profile's max, a dynamic batcher; the ensemble answers one row per image."""
    configs = exported["configs"]
    for model in ("dynamic", "dynamic_preprocess", "dynamic_detector", "dynamic_postprocess"):
        assert configs[model]["maxBatchSize"] == 8, model
        assert model == "dynamic" or configs[model]["dynamicBatching"] == {}, model
    assert dims(configs["dynamic_detector"]["input"]) == {"input_tensor": [3, 300, 300]}
    assert dims(configs["dynamic_detector"]["output"])["detection_boxes"] == [100, 4]
    pre = configs["dynamic_preprocess"]
    assert dims(pre["input"]) == {"images": [1]}
    assert dims(pre["output"]) == {"input_tensor": [3, 300, 300], "image_scale": [6],
                                   "image_error": [1]}
    assert (settings_of(pre)["min_batch"], settings_of(pre)["max_batch"]) == (1, 8)
    assert dims(configs["dynamic"]["output"]) == {
        "num_detections": [1], "boxes": [100, 4], "scores": [100], "classes": [100],
        "labels": [100], "error": [1]}
    assert "parameters" not in configs["dynamic"]  # max_batch_size says how many images


def test_profile_from_more_than_one_image_is_refused(tmp_path: Path, capsys) -> None:
    shape = [3, 300, 300]
    engine = fake_engine(tmp_path, fixture_graph("b4_nchw"), {
        "input_tensor": [[2, *shape], [4, *shape], [8, *shape]]})
    assert export("--engine", engine, "--repo", tmp_path / "repo") == 2
    assert ("its optimization profile starts at a batch of 2, but Triton's batcher sends "
            "batches from 1 image: build the engine with a profile from batch 1"
            ) in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_pre_and_post_settings_come_from_the_metadata_and_options(exported: dict) -> None:
    pre = exported["configs"]["static_preprocess"]
    assert pre["backend"] == "python" and pre["instanceGroup"] == [{"count": 3,
                                                                    "kind": "KIND_CPU"}]
    assert dims(pre["input"]) == {"images": [-1, 1]}
    assert dims(pre["output"]) == {"input_tensor": [4, 3, 300, 300], "image_scale": [-1, 6],
                                   "image_error": [-1, 1]}
    assert settings_of(pre) == {
        "layout": "NCHW", "min_batch": 4, "max_batch": 4, "true_image_shape": False,
        "preprocessor": {"kind": "fixed_shape", "height": 300, "width": 300,
                         "min_dimension": None, "max_dimension": None,
                         "pad_value": [127.5, 127.5, 127.5]}}
    post = exported["configs"]["static_postprocess"]
    assert settings_of(post) == {"class_offset": 0, "box_frame": "input",
                                 "score_threshold": 0.25,
                                 "labels": {"0": "person", "2": "carré \"A\""}}
    assert dims(post["input"]) == {
        "detector_num_detections": [4, 1], "detector_detection_boxes": [4, 100, 4],
        "detector_detection_scores": [4, 100], "detector_detection_classes": [4, 100],
        "image_scale": [-1, 6], "image_error": [-1, 1]}
    assert dims(post["output"]) == {"num_detections": [-1, 1], "boxes": [-1, 100, 4],
                                    "scores": [-1, 100], "classes": [-1, 100],
                                    "labels": [-1, 100], "error": [-1, 1]}
    ensemble = exported["configs"]["static"]
    assert "maxBatchSize" not in ensemble  # 0: a request is one batch of the engine's 4
    assert ensemble["parameters"] == {"max_images": {"stringValue": "4"}}


def test_ensemble_joins_the_steps(exported: dict) -> None:
    stand_in = fixture_graph("keep_aspect_nchw").stem
    config = exported["configs"][stand_in]
    assert config["platform"] == "ensemble"
    steps = config["ensembleScheduling"]["step"]
    assert [s["modelName"] for s in steps] == [f"{stand_in}_{part}" for part in
                                                ("preprocess", "detector", "postprocess")]
    assert steps[0]["outputMap"] == {"input_tensor": "input_tensor",
                                     "true_image_shape": "true_image_shape",
                                     "image_scale": "image_scale",
                                     "image_error": "image_error"}
    assert set(steps[1]["inputMap"]) == {"input_tensor", "true_image_shape"}
    # the detector's num_detections is not the answer's
    assert steps[1]["outputMap"]["num_detections"] == "detector_num_detections"
    assert steps[2]["inputMap"]["detector_num_detections"] == "detector_num_detections"
    assert [t["name"] for t in config["output"]] == list(RESULTS)


def test_stand_in_runs_the_onnx_as_a_python_model(exported: dict) -> None:
    stand_in = fixture_graph("keep_aspect_nchw").stem
    config = exported["configs"][f"{stand_in}_detector"]
    assert config["backend"] == "python"
    assert dims(config["input"]) == {"input_tensor": [1, 3, 320, 320], "true_image_shape": [1, 2]}
    version = exported["repo"] / f"{stand_in}_detector" / "1"
    assert (version / "model.onnx").read_bytes() == fixture_graph("keep_aspect_nchw").read_bytes()
    assert (version / "tfod_trt" / "reference" / "runner.py").is_file()


def test_serving_environment_takes_the_package_without_tensorflow() -> None:
    """The serving environment has NumPy 1.x (the wheel's requirement); the package and all its
    commands import there, TensorFlow staying unimported."""
    answer = run_tool("environment")
    assert answer["numpy"].startswith("1.") and answer["tensorflow_imported"] is False


# ---------------------------------------------------------------------------------------------
# the package copy: the repository runs its own code, with NumPy and Pillow only

MODEL_IMPORT = """
import sys, types
for absent in ("onnx", "onnxruntime", "onnx_graphsurgeon", "tensorflow", "tensorrt"):
    sys.modules[absent] = None  # an import of it fails
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
sys.path.insert(0, sys.argv[1])
import model, tfod_trt
print(tfod_trt.__file__)
"""


@pytest.mark.parametrize("part", ["preprocess", "postprocess"])
def test_python_models_import_the_repositorys_copy(exported: dict, tmp_path: Path,
                                                   part: str) -> None:
    version = exported["repo"] / f"static_{part}" / "1"
    done = subprocess.run([sys.executable, "-c", MODEL_IMPORT, str(version)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == version / "tfod_trt" / "__init__.py"


def test_reexport_replaces_the_models_and_keeps_the_others(exported: dict,
                                                           tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(exported["repo"], repo)
    before = (repo / "dynamic_detector" / "config.pbtxt").read_text()
    (repo / "static_preprocess" / "1" / "stale.txt").write_text("from an older export")
    assert export("--engine", exported["engine"], "--repo", repo, "--name", "static") == 0
    assert not (repo / "static_preprocess" / "1" / "stale.txt").exists()
    assert (repo / "dynamic_detector" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        p.name for p in exported["repo"].iterdir())  # no temporary folder left
    assert '"score_threshold": 0.0' in (repo / "static_postprocess" / "config.pbtxt").read_text(
        ).replace('\\"', '"')


# ---------------------------------------------------------------------------------------------
# the request-level pre- and postprocessing


def photos(coco_dir: Path, count: int, folder: Path) -> Path:
    """``count`` photos in a folder of their own, the last one as PNG."""
    folder.mkdir()
    sources = sorted((coco_dir / "images").iterdir())[:count]
    for source in sources[:-1]:
        shutil.copy(source, folder / source.name)
    from PIL import Image

    with Image.open(sources[-1]) as image:
        image.save(folder / f"{sources[-1].stem}.png")
    return folder


@pytest.fixture(params=[0, 2], ids=["in-thread", "decode-processes"])
def decoder(request: pytest.FixtureRequest) -> Executor | None:
    """Where a server decodes its requests' images: in the serving thread, or in decode
    processes (serve_triton.py --decode_workers)."""
    return decode_processes(request.param) if request.param else None


def test_preprocessing_equals_infers_batches(coco_dir: Path, tmp_path: Path,
                                             decoder: Executor | None) -> None:
    """A request of 3 photos for a batch-4 keep_aspect_ratio NCHW graph: the batch and its
    true_image_shape are the image batcher's (padding row included)."""
    folder = photos(coco_dir, 3, tmp_path / "photos")
    pre = Preprocessor.keep_aspect_ratio(256, 320).with_pad_value((127.5, 127.5, 127.5))
    settings = PreprocessSettings(pre, "NCHW", 4, 4, True)
    inputs = preprocess_request([p.read_bytes() for p in sorted(folder.iterdir())], settings,
                                decoder)
    (batch,) = ImageBatcher(folder, pre, batch_size=4, layout="NCHW", workers=1)
    np.testing.assert_array_equal(inputs["input_tensor"], batch.data)
    np.testing.assert_array_equal(inputs["true_image_shape"], batch.true_image_shape())
    assert inputs[IMAGE_SCALE].tolist() == [[s.orig_height, s.orig_width, s.resized_height,
                                             s.resized_width, 320, 320] for s in batch.scales]


@pytest.mark.parametrize(("images", "message"), [
    ([], "the request has no image: send one or more in 'images'"),
    ([b"x"] * 3, "the request has 3 images; this detector takes at most 2 per request"),
])
def test_preprocessing_refuses_a_bad_request(images: list[bytes], message: str) -> None:
    settings = PreprocessSettings(Preprocessor.fixed_shape(64, 64), "NHWC", 1, 2, False)
    with pytest.raises(ValueError) as raised:
        preprocess_request(images, settings)
    assert str(raised.value) == message


def test_an_image_that_cannot_be_read_is_answered_in_its_row(decoder: Executor | None) -> None:
    """Not a request's error: its other images are preprocessed, its own row is padding and
    names the reason."""
    from PIL import Image

    settings = PreprocessSettings(Preprocessor.fixed_shape(64, 64), "NHWC", 3, 3, False)
    photo = io.BytesIO()
    Image.new("RGB", (32, 16), (200, 10, 10)).save(photo, format="PNG")
    inputs = preprocess_request([b"not an image", photo.getvalue()], settings, decoder)
    assert inputs[IMAGE_ERROR].tolist() == [
        [b"not an image file (its format is not one Pillow reads)"], [b""]]
    assert not inputs["input_tensor"][0].any() and inputs["input_tensor"][1].any()
    assert inputs[IMAGE_SCALE][1].tolist() == [16, 32, 64, 64, 64, 64]  # stretched to 64x64


def test_postprocessing_maps_to_pixels_and_pads_each_image() -> None:
    """Three images of a batch of 4 (the last row is padding): the first has two detections
    (one under the threshold), the second none, the third could not be read."""
    outputs = {"num_detections": np.array([[2], [0], [1], [1]], np.int32),
               "detection_boxes": np.zeros((4, 3, 4), np.float32),
               "detection_scores": np.array([[0.9, 0.1, 0], [0, 0, 0], [0.8, 0, 0],
                                             [0.7, 0, 0]], np.float32),
               "detection_classes": np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]],
                                             np.int32)}
    outputs["detection_boxes"][0, 0] = [0.25, 0.5, 0.75, 1.0]  # y1 x1 y2 x2 of the input
    outputs["detection_boxes"][2:, 0] = [0.1, 0.1, 0.2, 0.2]
    # 200 x 400 photos resized to 100 x 200 inside a 200 x 200 input: y normalised to it
    scale = np.array([[200, 400, 100, 200, 200, 200]] * 3)
    errors = np.array([[b""], [b""], [b"not an image file"]], dtype=object)
    answer = postprocess_request(outputs, scale, errors, PostprocessSettings(
        0, "input", 0.5, {1: "square"}))
    assert answer["num_detections"].tolist() == [[1], [0], [-1]]
    assert answer["boxes"].shape == (3, 3, 4) and answer["labels"].shape == (3, 3)
    np.testing.assert_allclose(answer["boxes"][0, 0], [200.0, 100.0, 400.0, 200.0])
    assert not answer["boxes"][0, 1:].any() and answer["labels"][0].tolist() == [
        b"square", b"", b""]
    first, second, third = unpack_answer(answer)
    assert first.scores.tolist() == [pytest.approx(0.9)] and first.classes.tolist() == [1]
    assert first.labels == ["square"] and first.error == ""
    assert second.boxes.shape == (0, 4) and second.error == ""
    assert third.error == "not an image file" and len(third.scores) == 0


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit status 2


def plain_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain", [x], [y])
    onnx.save(helper.make_model(graph), path)
    return path


def bad_input_cases(folder: Path, engine: Path) -> list[tuple[list, str]]:
    bare = folder / "bare.engine"
    bare.write_bytes(b"plan")
    broken = folder / "broken.engine"
    broken.write_bytes(b"plan")
    Path(f"{broken}.json").write_text("{not json")
    foreign = folder / "foreign.engine"
    foreign.write_bytes(b"plan")
    Path(f"{foreign}.json").write_text(json.dumps({"engine": {"precision": "fp32"}}))
    a_file = folder / "a_file"
    a_file.write_text("")
    inside = folder / "repo" / "ssd_detector" / "1"
    inside.mkdir(parents=True)
    shutil.copy(engine, inside / "model.engine")
    shutil.copy(f"{engine}.json", inside / "model.engine.json")
    (folder / "repo" / "notes_postprocess").write_text("not a model")
    repo = folder / "out"
    return [
        (["--engine", folder / "missing.engine", "--repo", repo],
         f"{folder / 'missing.engine'}: engine file not found: build it with build_engine.py"),
        (["--engine", bare, "--repo", repo],
         f"{bare}: no bare.engine.json beside it (build_engine.py writes it: the engine's "
         "inputs and outputs are read there); rebuild with build_engine.py"),
        (["--engine", broken, "--repo", repo], f"{broken}.json: unreadable engine metadata"),
        (["--engine", foreign, "--repo", repo],
         f"{foreign}.json: no 'preprocessor' in the metadata: not the metadata of a graph of "
         "create_onnx.py; rebuild with build_engine.py"),
        (["--onnx", plain_onnx(folder / "plain.onnx"), "--repo", repo],
         f"{folder / 'plain.onnx'}: has no EfficientNMS_TRT output: not a graph made by "
         "create_onnx.py"),
        (["--engine", engine, "--repo", a_file], f"--repo {a_file}: is a file, not a folder"),
        (["--engine", engine, "--repo", repo, "--name", "_x"],
         "--name '_x': use letters, digits, '_', '-' and '.' (not first)"),
        (["--engine", engine, "--repo", repo, "-t", "1.5"],
         "--score_threshold 1.5: must lie in [0, 1]"),
        (["--engine", engine, "--repo", repo, "--labels", folder / "none.txt"],
         f"{folder / 'none.txt'}: label file not found"),
        (["--engine", inside / "model.engine", "--repo", folder / "repo", "--name", "ssd"],
         f"{folder / 'repo' / 'ssd_detector'} contains {inside / 'model.engine'}"),
        (["--engine", engine, "--repo", folder / "repo", "--name", "notes"],
         f"{folder / 'repo' / 'notes_postprocess'}: is a file where the model folder "
         "notes_postprocess goes; move it or choose another --name"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    engine = fake_engine(tmp_path, fixture_graph("b4_nchw"))
    for args, message in bad_input_cases(tmp_path, engine):
        assert export(*args) == 2, args
        error = capsys.readouterr().err
        assert error.startswith(f"export_triton.py: error: {message}"), error
        assert error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["notes_postprocess",
                                                                     "ssd_detector"]


def test_instances_must_be_positive(capsys) -> None:
    assert export("--engine", "x.engine", "--repo", "r", "--instances", "0") == 2
    assert "argument --instances: 0 must be at least 1" in capsys.readouterr().err
