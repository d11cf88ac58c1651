"""tf_graph.optimize: tf2onnx's optimizers run on the converted graph itself (tf2onnx's default
copies the whole graph before each one), and tf2onnx's own way where an optimizer fails."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from tf2onnx.optimizer.back_to_back_optimizer import BackToBackOptimizer  # noqa: E402

from tfod_trt.convert.tf_graph import graph_maker, optimize  # noqa: E402


@pytest.fixture(scope="module")
def make_graph():
    """Makes tf2onnx's graph of y = transpose(transpose(x)) * 2 + 1 (two Transposes that the
    back-to-back optimizer removes) on each call, and counts the calls."""

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32)])
    def double_plus_one(x):
        return tf.transpose(tf.transpose(x)) * 2.0 + 1.0

    function = double_plus_one.get_concrete_function()
    make = graph_maker(function, [t.name for t in function.outputs], 17)

    def counted():
        counted.calls += 1
        return make()

    counted.calls = 0
    return counted


class Seen:
    """An optimizer that records the graph it is given and changes nothing."""

    graphs: list = []

    def __init__(self) -> None:
        self.graph_been_opt = False

    def optimize(self, graph, iteration: int):
        Seen.graphs.append(graph)
        return graph


class Fails(Seen):
    """An optimizer that raises, as a tf2onnx optimizer can on an unusual graph."""

    def optimize(self, graph, iteration: int):
        raise ValueError("cannot optimize this graph")


def ops(graph) -> list[str]:
    return sorted(node.type for node in graph.get_nodes())


def run(graph, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(graph.make_model("t").SerializeToString())
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_optimizers_see_the_graph_itself(make_graph) -> None:
    Seen.graphs = []
    made = make_graph.calls
    graph = optimize(make_graph, {"seen": Seen, "back_to_back": BackToBackOptimizer})
    assert make_graph.calls == made + 1
    assert Seen.graphs and all(seen is graph for seen in Seen.graphs)  # no copies
    assert "Transpose" not in ops(graph)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run(graph, x), x * 2 + 1)


def test_a_failing_optimizer_is_skipped_on_a_fresh_graph(make_graph) -> None:
    Seen.graphs = []
    made = make_graph.calls
    graph = optimize(make_graph, {"fails": Fails, "seen": Seen,
                                  "back_to_back": BackToBackOptimizer})
    assert make_graph.calls == made + 2  # the first graph may be half-optimized: made again
    assert Seen.graphs  # the optimizer after the failing one still ran
    assert "Transpose" not in ops(graph)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(run(graph, x), x * 2 + 1)
