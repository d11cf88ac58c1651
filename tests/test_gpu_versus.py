"""The GPU comparison with NVIDIA's sample (dev/gpu/gpu_versus_*): onnx_shared_weights.py
carries several graphs of one network with their weights stored once (ONNX external data in
one shared file) and makes them self-contained again; versus_table.py puts the measurements
side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev" / "gpu"))
import onnx_shared_weights  # noqa: E402
import versus_table  # noqa: E402

RNG = np.random.default_rng(0)
SHARED = RNG.normal(size=(64, 32)).astype(np.float32)  # 8 KiB, in both graphs
OWN = RNG.normal(size=(32, 32)).astype(np.float32)  # 4 KiB, in one graph only


def graph(path: Path, scale: float, extra: bool) -> Path:
    nodes = [helper.make_node("MatMul", ["x", "weight"], ["y0"], name="mm"),
             helper.make_node("Mul", ["y0", "scale"], ["y1" if extra else "y"], name="mul")]
    weights = [numpy_helper.from_array(SHARED, "weight"),
               numpy_helper.from_array(np.float32([scale]), "scale")]
    if extra:
        nodes.append(helper.make_node("MatMul", ["y1", "own"], ["y"], name="mm2"))
        weights.append(numpy_helper.from_array(OWN, "own"))
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32])], weights),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_shared_weights_are_stored_once_and_come_back_exact(tmp_path: Path) -> None:
    first = graph(tmp_path / "first.onnx", 2.0, extra=False)
    second = graph(tmp_path / "second.onnx", 3.0, extra=True)
    size = onnx_shared_weights.pack([first, second], tmp_path / "packed")
    assert size == SHARED.nbytes + OWN.nbytes  # the shared weight once
    assert (tmp_path / "packed" / "weights.bin").stat().st_size == size
    for name in ("first.onnx", "second.onnx"):  # the graphs keep only the small constants
        assert (tmp_path / "packed" / name).stat().st_size < 1024
    written = onnx_shared_weights.unpack(tmp_path / "packed", tmp_path / "unpacked")
    assert [p.name for p in written] == ["first.onnx", "second.onnx"]
    x = RNG.normal(size=(2, 64)).astype(np.float32)
    for original in (first, second):
        restored = tmp_path / "unpacked" / original.name
        model = onnx.load(str(restored), load_external_data=False)
        assert all(t.data_location == TensorProto.DEFAULT for t in model.graph.initializer)
        np.testing.assert_array_equal(run(restored, x), run(original, x))


def write_result(folder: Path, row: dict, graph_ms: float, plain_ms: float,
                 layers: list[tuple[str, float]]) -> None:
    folder.mkdir(parents=True)
    (folder / "row.json").write_text(json.dumps(row))
    compute = [{"kind": "tensorrt", "measure": "compute", "cuda_graph": graph,
                "latency_ms": {"median": ms}} for graph, ms in ((True, graph_ms),
                                                                (False, plain_ms))]
    (folder / "latency.json").write_text(json.dumps({"results": compute}))
    rows = [{"name": name, "ms": ms, "kind": "plugin" if "nms" in name else "other"}
            for name, ms in layers]
    (folder / "profile.json").write_text(json.dumps({"results": [{"kind": "profile",
                                                                  "layers": rows}]}))


def test_versus_table_compares_each_engine_with_the_anchor(tmp_path: Path) -> None:
    base = {"batch": 1, "precision": "fp16"}
    write_result(tmp_path / "nvidia", {**base, "graph": "nvidia", "build": "--keep_fp32=none",
                                       "order": 1, "anchor": True},
                 1.0, 1.25, [("conv", 0.5), ("nms", 0.25)])
    write_result(tmp_path / "ours", {**base, "graph": "ours", "build": "default", "order": 2,
                                     "anchor": False},
                 1.2, 1.5, [("conv", 0.5), ("efficient_nms", 0.5), ("guard", 0.125)])
    write_result(tmp_path / "ours32", {**base, "precision": "fp32", "graph": "ours",
                                       "build": "default", "order": 2, "anchor": False},
                 2.0, 2.5, [("conv", 1.0)])
    lines = versus_table.table(versus_table.load_rows(tmp_path)).splitlines()
    assert lines[2:] == [
        "| 1 | fp32 | ours | default | 2.000 | 2.500 | 500 | - | 0.000 | 1.000 |",
        "| 1 | fp16 | nvidia | --keep_fp32=none | 1.000 | 1.250 | 1000 | 1.00 (anchor) | 0.250 "
        "| 0.500 |",
        "| 1 | fp16 | ours | default | 1.200 | 1.500 | 833 | 1.20x | 0.500 | 0.625 |",
    ]
