"""``python -m tfod_trt doctor``: its report on this (CPU) machine and on model files, its
TensorRT checks against the real Python API of TensorRT 10.x and 11.x (test_trt_api_surface's
surface), and, on a TensorRT machine, a report that says engines can be built."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from test_trt_api_surface import Surface, surface  # noqa: F401

from tfod_trt.commands.doctor import NAME_WIDTH
from tfod_trt.doctor.checks import fix
from tfod_trt.metadata import set_metadata

ROOT = Path(__file__).resolve().parents[1]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
cpu_machine = pytest.mark.skipif(HAS_TENSORRT or not HAS_TENSORFLOW,
                                 reason="expects the development machine: TensorFlow, no TensorRT")


def env_with_root(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this one) with the checkout first on PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def doctor(*args: str | Path, env: dict[str, str] | None = None, entry: str = "doctor"
           ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tfod_trt", *([entry] if entry else []), *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env or env_with_root(), capture_output=True,
                          text=True, timeout=300)


def line_of(output: str, name: str) -> str:
    """The report line of check ``name`` ("  ok  NAME  detail" or "  NO  ...")."""
    width = max(NAME_WIDTH, len(name)) + 1
    found = [line for line in output.splitlines()
             if line[:6] in ("  ok  ", "  NO  ") and line[6:6 + width].rstrip() == name]
    assert len(found) == 1, f"no single line for {name!r} in:\n{output}"
    return found[0]


def plugin_model(path: Path, metadata: dict | None = None, qdq: bool = False) -> Path:
    """A tiny graph with an EfficientNMS_TRT v1 node (and optionally Q/DQ nodes)."""
    nodes = [helper.make_node("Relu", ["boxes"], ["relu_boxes"], name="relu"),
             helper.make_node("EfficientNMS_TRT", ["relu_boxes", "scores"],
                              ["num", "det_boxes", "det_scores", "det_classes"], name="nms",
                              plugin_version="1", score_threshold=0.5, iou_threshold=0.5,
                              max_output_boxes=10, background_class=-1, score_activation=0,
                              box_coding=0)]
    inits = []
    if qdq:
        nodes[0].input[0] = "dq_boxes"
        nodes[:0] = [helper.make_node("QuantizeLinear", ["boxes", "scale"], ["q_boxes"]),
                     helper.make_node("DequantizeLinear", ["q_boxes", "scale"], ["dq_boxes"])]
        inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])]
    graph = helper.make_graph(
        nodes, "doctor_test",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4, 2])],
        [helper.make_tensor_value_info("num", TensorProto.INT32, [1, 1])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata is not None:
        set_metadata(model, metadata)
    onnx.save(model, path)
    return path


def engine_file(path: Path, tensorrt_version: str | None = "8.6.0") -> Path:
    path.write_bytes(b"not a real engine")
    if tensorrt_version:
        Path(f"{path}.json").write_text(json.dumps({"num_classes": 3, "engine": {
            "onnx": "model.onnx", "precision": "fp16", "tensorrt_version": tensorrt_version}}))
    return path


# ---------------------------------------------------------------------------------------------
# This machine (CPU): TensorFlow, no TensorRT, no GPU.


@cpu_machine
def test_report_on_this_machine() -> None:
    result = doctor()
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert platform.python_version() in line_of(out, "Python")
    for name, dist in (("TensorFlow", "tensorflow"), ("tf2onnx", "tf2onnx")):
        line = line_of(out, name)
        assert line.split()[0] == "ok" and importlib.metadata.version(dist) in line
    assert line_of(out, "TFOD API").split()[0] == "ok"
    assert "can convert: yes" in out.splitlines()
    tensorrt = line_of(out, "TensorRT")
    assert tensorrt.split()[0] == "NO" and "not installed" in tensorrt
    assert tensorrt.endswith("-> fix: pip install tensorrt-cu12")
    assert line_of(out, "GPU").split()[0] == "NO"
    assert "pip install cuda-python" in line_of(out, "CUDA back-end")
    assert re.search(r"^can build and run engines: no \(missing: .*TensorRT", out, re.M)


def test_conversion_fix_names_this_checkout() -> None:
    """Run from (or installed editable from) a checkout, the fix for a missing TensorFlow installs
    that checkout's `tf` extra, wherever the command runs from."""
    assert fix("tf") == f'pip install -e "{ROOT}[tf]"'


def test_the_package_lists_its_commands() -> None:
    listed = doctor("--help", entry="")
    assert listed.returncode == 0 and re.search(r"^\s+doctor\s+\w", listed.stdout, re.M)
    for command in ("create-onnx", "build-engine", "quantize", "infer", "eval-coco",
                    "compare-tf", "benchmark", "export-triton", "serve-triton"):
        assert re.search(rf"^\s+{command}\s+\w", listed.stdout, re.M), command
    assert doctor(entry="").returncode == 2
    unknown = doctor(entry="no-such-command")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "python -m tfod_trt: error: unknown command 'no-such-command' (choose from "
        "create-onnx, build-engine, quantize, infer, eval-coco, compare-tf, benchmark, "
        "export-triton, serve-triton, doctor)"]
    assert "MODEL" in doctor("--help").stdout


@cpu_machine
def test_onnx_model_report(tmp_path: Path) -> None:
    model = plugin_model(tmp_path / "model.onnx", {"meta_arch": "ssd", "num_classes": 3})
    bare = plugin_model(tmp_path / "bare.onnx", qdq=True)
    result = doctor(model, bare)
    assert result.returncode == 1 and not result.stderr.strip()
    model_part, bare_part = result.stdout.split(f"\n{model}:\n")[1].split(f"\n{bare}:\n")
    assert "tfod_trt: meta_arch ssd, num_classes 3" in line_of(model_part, "converter metadata")
    assert "FP32 graph" in line_of(model_part, "precision")
    nms = line_of(model_part, "EfficientNMS_TRT v1")
    assert nms.split()[0] == "NO" and "plugin, 1 node: no TensorRT here" in nms
    assert nms.endswith("-> fix: pip install tensorrt-cu12")
    assert "no tfod_trt entry" in line_of(bare_part, "converter metadata")
    assert "Q/DQ (INT8) graph" in line_of(bare_part, "precision")


@cpu_machine
def test_engine_report_without_tensorrt(tmp_path: Path) -> None:
    engine = engine_file(tmp_path / "model.engine")
    unknown = engine_file(tmp_path / "unknown.engine", None)
    result = doctor(engine, unknown)
    assert result.returncode == 1 and not result.stderr.strip()
    known_part, unknown_part = result.stdout.split(f"\n{unknown}:\n")
    assert "TensorRT 8.6.0 (fp16" in line_of(known_part, "built with")
    absent = line_of(known_part, "TensorRT here")
    assert absent.split()[0] == "NO" and "absent" in absent and "tensorrt-cu12" in absent
    assert "no unknown.engine.json" in line_of(unknown_part, "built with")


@pytest.mark.parametrize("name, content, problem", [
    ("empty.onnx", b"", "empty file"),
    ("missing.onnx", None, "No such file or directory"),
    ("garbage.onnx", b"\xff\xfe not protobuf", "not an ONNX model"),
    ("model.pb", b"x", "unknown kind of model file"),
    ("bad.engine", b"x", "unreadable engine metadata"),
])
def test_unreadable_model_is_one_line(tmp_path: Path, name: str, content: bytes | None,
                                      problem: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    if name == "bad.engine":
        Path(f"{path}.json").write_text("{not json")
        path = Path(f"{path}.json")  # the file the error names
    result = doctor(tmp_path / name)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and result.stdout == ""
    assert len(lines) == 1 and lines[0].startswith(f"doctor: error: {path}: "), lines
    assert problem in lines[0]


# ---------------------------------------------------------------------------------------------
# The real TensorRT 10.x / 11.x Python API (stub libraries, no GPU).

TENSORRT_CHECKS = r"""
import dataclasses, json
import tensorrt as trt
from tfod_trt.doctor.machine import tensorrt_checks
print(json.dumps({
    "checks": [dataclasses.asdict(check) for check in tensorrt_checks(trt)],
    "installed": [dataclasses.asdict(check) for check in tensorrt_checks()],
    "fp16_flag": hasattr(trt.BuilderFlag, "FP16"),
    "calibrator": hasattr(trt, "IInt8EntropyCalibrator2"),
}))
"""


@pytest.fixture(scope="module")
def surface_checks(surface: Surface) -> dict:  # noqa: F811
    result = subprocess.run([sys.executable, "-c", TENSORRT_CHECKS], cwd=ROOT,
                            env=surface.env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {**report, "version": surface.version,
            "by_name": {check["name"]: check for check in report["checks"]}}


def test_tensorrt_version_and_precision_route(surface_checks: dict) -> None:
    checks, version = surface_checks["by_name"], surface_checks["version"]
    assert surface_checks["installed"] == surface_checks["checks"]  # found as the installed one
    assert checks["TensorRT"]["ok"] and checks["TensorRT"]["detail"].startswith(version)
    route = checks["precision route"]
    assert route["ok"]
    if surface_checks["fp16_flag"]:  # 10.x: the real bindings have the flags and calibrators
        assert version.startswith("10.") and surface_checks["calibrator"]
        assert route["detail"].startswith("builder flags")
        assert "INT8 calibrator" in route["detail"] and "--int8_mode calibrator" in route["detail"]
    else:  # 11.x: strongly typed
        assert version.startswith("11.") and not surface_checks["calibrator"]
        assert route["detail"].startswith("strongly typed")
        assert "FP16 ONNX" in route["detail"] and "Q/DQ ONNX" in route["detail"]


def test_plugins_without_the_library_are_reported_not_raised(surface_checks: dict) -> None:
    """The stub libnvinfer has no plugin registry: both plugins are reported missing (with the
    10.12+ CropAndResize rename) instead of raising."""
    checks = surface_checks["by_name"]
    nms, crop = checks["EfficientNMS_TRT v1"], checks["CropAndResize v1"]
    assert not nms["ok"] and not crop["ok"]
    assert "no plugin registry" in nms["detail"]
    assert crop["detail"].startswith("as CropAndResizeDynamic v2: ")
    assert nms["fix"] == "pip install --force-reinstall tensorrt-cu12"


def test_cli_with_the_real_bindings(surface: Surface, tmp_path: Path) -> None:  # noqa: F811
    model = plugin_model(tmp_path / "model.onnx", {"meta_arch": "ssd"}, qdq=True)
    engine = engine_file(tmp_path / "model.engine")
    result = doctor(model, engine, env=surface.env())
    out = result.stdout
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in out + result.stderr
    assert line_of(out, "TensorRT").split()[:3] == ["ok", "TensorRT", surface.version]
    strongly_typed = surface.version.startswith("11.")
    precision = line_of(out.split(f"\n{model}:\n")[1], "precision")
    flag = "no builder flag (strongly typed)" if strongly_typed else "the INT8 builder flag"
    assert f"TensorRT {surface.version} builds it with {flag}" in precision
    mismatch = line_of(out.split(f"\n{engine}:\n")[1], "TensorRT here")
    assert f"built with 8.6.0, this is {surface.version}: rebuild with build_engine.py" in mismatch
    assert mismatch.endswith(f"-> fix: python build_engine.py -o model.onnx -e {engine} -p fp16")


# ---------------------------------------------------------------------------------------------
# A TensorRT machine with a GPU.


@pytest.mark.gpu
def test_engines_can_be_built_here(gpu: None) -> None:
    result = doctor()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"^\s+ok\s+GPU 0\s+.+, compute capability \d+\.\d+, ", out, re.M), out
    for plugin in ("EfficientNMS_TRT v1", "CropAndResize v1"):
        line = line_of(out, plugin)
        assert line.split()[0] == "ok" and "registered" in line and "not registered" not in line
    assert line_of(out, "CUDA back-end").split()[0] == "ok"
    assert "can build and run engines: yes" in out.splitlines()
