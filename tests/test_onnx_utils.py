"""Small graph edits of onnx_utils, run in ONNX Runtime against NumPy."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

from tfod_trt.convert.graph_edits import variable
from tfod_trt.convert.postprocess import prefix_sum


def run_prefix_sum(values: np.ndarray) -> tuple[np.ndarray, onnx.ModelProto]:
    source = variable("values", np.float32, list(values.shape))
    graph = gs.Graph(inputs=[source], opset=17)
    result = prefix_sum(graph, source, "counts")
    graph.outputs = [result]
    model = gs.export_onnx(graph.cleanup().toposort())
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"values": values})[0], model


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 3), (1, 300, 1), (2, 1200, 4), (1, 5000, 4)])
def test_prefix_sum_equals_cumsum_on_counts(shape: tuple[int, int, int]) -> None:
    one_hot = (np.random.default_rng(sum(shape)).random(shape) < 0.3).astype(np.float32)
    sums, model = run_prefix_sum(one_hot)
    np.testing.assert_array_equal(sums, np.cumsum(one_hot, axis=1, dtype=np.float32))
    assert sums.shape == shape
    assert "CumSum" not in {node.op_type for node in model.graph.node}


def test_prefix_sum_constants_stay_small() -> None:
    """Blocks of ~sqrt(N): a dense N x N triangle for 9000 candidates would weigh 324 MB."""
    _, model = run_prefix_sum(np.ones((1, 9000, 1), np.float32))
    weights = sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    assert weights < 200_000
