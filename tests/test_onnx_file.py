"""A file given as the ONNX model that is none (empty, other bytes, a protobuf without a graph),
or another project's ONNX graph: every script that takes one ends in one line naming the file
and the problem, exit code 2."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import onnx
import pytest
from fixtures import exported_model, have_tensorflow
from onnx import TensorProto, helper

import benchmark
import build_engine
import compare_tf
import eval_coco
import export_triton
import infer
import quantize

NOT_ONNX = "not an ONNX model"
NO_NMS = "has no EfficientNMS_TRT output: not a graph made by create_onnx.py"


def other_projects_graph(path: Path) -> None:
    """A valid ONNX classifier-like graph: image in, one 'scores' output, no NMS."""
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 300, 300, 3])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 300, 300, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["scores"])], "other",
                              [image], [scores])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def bad_file(kind: str, folder: Path, coco_dir: Path) -> tuple[Path, list[str]]:
    """The file of ``kind`` and what its error line must say."""
    path = folder / f"{kind}.onnx"
    if kind == "empty":
        path.write_bytes(b"")
        return path, [f"{NOT_ONNX} (0 bytes)"]
    if kind == "photo":
        shutil.copy(sorted((coco_dir / "images").glob("*.jpg"))[0], path)
        return path, [f"{NOT_ONNX} (cannot parse: "]
    if kind == "no graph":  # parses as a ModelProto: ir_version 7 and nothing else
        path.write_bytes(b"\x08\x07")
        return path, [f"{NOT_ONNX} (cannot parse: no graph in its 2 bytes)"]
    other_projects_graph(path)
    return path, [NO_NMS, "num_detections, detection_boxes, detection_scores, "
                          "detection_classes missing", "its outputs: scores"]


def command_line(script: str, model: Path, folder: Path, coco_dir: Path) -> list[str]:
    images, annotations = coco_dir / "images", coco_dir / "instances_val2017_64.json"
    return {
        "infer.py": ["--onnx", model, "-p", "fixed_shape:300x300", "-i", images,
                     "-o", folder / "out"],
        "eval_coco.py": ["--onnx", model, "-i", images, "-a", annotations],
        "compare_tf.py": ["--saved_model", folder / "exported", "--onnx", model, "-i", images,
                          "-o", folder / "out"],
        "benchmark.py": ["--onnx", model, "--duration", "0"],
        "quantize.py": ["-o", model, "--output", folder / "q.onnx", "-m", "fp16"],
        "build_engine.py": ["-o", model, "-e", folder / "model.engine"],
        "export_triton.py": ["--onnx", model, "--repo", folder / "repo"],
    }[script]


SCRIPTS = {"infer.py": infer, "eval_coco.py": eval_coco, "compare_tf.py": compare_tf,
           "benchmark.py": benchmark, "quantize.py": quantize, "build_engine.py": build_engine,
           "export_triton.py": export_triton}


KINDS = ["empty", "photo", "no graph", "another project's graph"]
# build_engine.py builds any ONNX graph (TensorRT's job); the detection outputs matter to the
# tools that read them.
CASES = [(script, kind) for script in SCRIPTS for kind in KINDS
         if (script, kind) != ("build_engine.py", "another project's graph")]


@pytest.mark.parametrize(("script", "kind"), CASES)
def test_a_file_that_is_no_detection_onnx_is_one_line(script: str, kind: str, tmp_path: Path,
                                                      coco_dir: Path) -> None:
    if script == "compare_tf.py":  # it checks TensorFlow and the SavedModel folder first
        if not have_tensorflow():
            pytest.skip("TensorFlow is absent")
        (tmp_path / "exported").symlink_to(exported_model("ssd_mobilenet_v2"))
    path, parts = bad_file(kind, tmp_path, coco_dir)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = SCRIPTS[script].main(
            [str(a) for a in command_line(script, path, tmp_path, coco_dir)])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, err.getvalue()
    assert lines[0].startswith(f"{script}: error: {path}: "), lines
    for part in parts:
        assert part in lines[0], lines
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "model.engine").exists()
    assert not (tmp_path / "repo").exists()
