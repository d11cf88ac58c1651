"""dev/gpu/onnx_half_weights.py: float16-stored weights, the smaller form in which large test
graphs are copied to a TensorRT machine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev" / "gpu"))
import onnx_half_weights  # noqa: E402


def small_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    big = numpy_helper.from_array(rng.normal(size=(64, 32)).astype(np.float32), "weight")
    small = numpy_helper.from_array(np.float32([0.1234567]), "scale")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y0"]),
         helper.make_node("Mul", ["y0", "scale"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], [big, small])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"tfod_trt": "{}"})
    return model


def test_pack_then_unpack_gives_float32_weights_rounded_to_float16() -> None:
    original = small_model()
    weights = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer}
    packed = onnx_half_weights.pack(small_model())
    kinds = {t.name: t.data_type for t in packed.graph.initializer}
    assert kinds == {"weight": TensorProto.FLOAT16, "scale": TensorProto.FLOAT}
    assert packed.ByteSize() < 0.6 * original.ByteSize()
    restored = onnx_half_weights.unpack(packed)
    values = {t.name: numpy_helper.to_array(t) for t in restored.graph.initializer}
    assert values["weight"].dtype == np.float32
    np.testing.assert_array_equal(values["weight"],
                                  weights["weight"].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(values["scale"], weights["scale"])  # small: exact
    assert {p.key: p.value for p in restored.metadata_props} == {"tfod_trt": "{}"}
    onnx.checker.check_model(restored)
