"""Small, named onnx-graphsurgeon edits (constants, nodes, rewiring, layout glue) and the ONNX
checker that knows TensorRT's plugin ops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tfod_trt.files import atomic_write_bytes
from tfod_trt.metadata import INPUT_NAME, PLUGIN_OPS


def const(name: str, value: Any, dtype: type = np.float32) -> gs.Constant:
    return gs.Constant(name, np.asarray(value, dtype=dtype))


def reshape_dims(name: str, dims: list) -> gs.Constant:
    """A Reshape's target shape; a symbolic dimension (the dynamic batch) becomes -1, which
    Reshape infers."""
    return const(name, [d if isinstance(d, int) else -1 for d in dims], np.int64)


def broadcast_dims(name: str, dims: list) -> gs.Constant:
    """An Expand's target shape; a symbolic dimension (the dynamic batch) becomes 1, which
    Expand broadcasts to the input's size."""
    return const(name, [d if isinstance(d, int) else 1 for d in dims], np.int64)


def add_node(graph: gs.Graph, op: str, inputs: list, outputs: list, **attrs) -> list:
    """Appends a node named after its first output (made unique: outputs get renamed)."""
    name, taken = f"{outputs[0].name}/{op}", {node.name for node in graph.nodes}
    while name in taken:
        name += "_"
    graph.nodes.append(gs.Node(op, name=name, inputs=inputs, outputs=outputs, attrs=attrs))
    return outputs


def variable(name: str, dtype: Any = np.float32, shape: list | None = None) -> gs.Variable:
    return gs.Variable(name, dtype=dtype, shape=shape)


def rewire(graph: gs.Graph, old: gs.Tensor, new: gs.Tensor) -> None:
    """Every node that reads `old` reads `new` instead."""
    for node in graph.nodes:
        node.inputs = [new if t is old else t for t in node.inputs]


def slice_last_axis(graph: gs.Graph, tensor: gs.Tensor, start: int, end: int, name: str,
                    shape: list) -> gs.Variable:
    """tensor[..., start:end], e.g. without TFOD's background column."""
    (sliced,) = add_node(
        graph, "Slice",
        [tensor, const(f"{name}_start", [start], np.int64),
         const(f"{name}_end", [end], np.int64), const(f"{name}_axis", [-1], np.int64)],
        [variable(name, np.float32, shape)],
    )
    return sliced


def replace_input_with_normalization(
    graph: gs.Graph, network_input: gs.Variable, batch_size: int, height: int, width: int,
    input_format: str, scale: tuple[float, ...], offset: tuple[float, ...],
) -> gs.Variable:
    """New graph input (pixels 0..255, RGB) -> optional NCHW->NHWC -> x * scale + offset.

    The network's own input (the preprocessed image of TFOD) is fed from it; the product and
    sum are written as TFOD's feature extractors compute them (float32).
    """
    shape = [batch_size, height, width, 3] if input_format == "NHWC" else [batch_size, 3, height,
                                                                            width]
    image = variable(INPUT_NAME, np.float32, shape)
    nhwc = image
    if input_format == "NCHW":
        (nhwc,) = add_node(graph, "Transpose", [image], [variable("input_nhwc")], perm=[0, 2, 3, 1])
    current = nhwc
    if any(s != 1.0 for s in scale):
        (current,) = add_node(graph, "Mul", [current, const("norm_scale", scale)],
                              [variable("input_scaled")])
    (normalized,) = add_node(graph, "Add", [current, const("norm_offset", offset)],
                             [variable("input_normalized")])
    rewire(graph, network_input, normalized)
    graph.inputs = [image]
    return image


def fold_inverse_transposes(graph: gs.Graph) -> None:
    """Bypasses Transpose pairs that undo each other (layout glue between our nodes and
    tf2onnx's); graph.cleanup() then drops them."""
    for node in graph.nodes:
        producer = node.inputs[0].inputs[0] if node.op == "Transpose" and node.inputs[0].inputs \
            else None
        if producer is None or producer.op != "Transpose":
            continue
        first, second = producer.attrs["perm"], node.attrs["perm"]
        if [first[i] for i in second] == list(range(len(second))) \
                and node.outputs[0] not in graph.outputs:
            rewire(graph, node.outputs[0], producer.inputs[0])


def check_model(model: onnx.ModelProto) -> None:
    """onnx.checker on a copy whose TensorRT plugin nodes sit in their own domain (the checker
    rejects unknown ops in the default domain, where TensorRT's parser expects them)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.op_type in PLUGIN_OPS:
            node.domain = "trt.plugins"
    copy.opset_import.add(domain="trt.plugins", version=1)
    onnx.checker.check_model(copy)


def save_model(model: onnx.ModelProto, path: str | Path) -> None:
    """Checks and saves an ONNX model atomically (models over 2 GB are not expected here)."""
    atomic_write_bytes(path, model.SerializeToString())


def precise_global_means(graph: gs.Graph, opset: int) -> None:
    """Every GlobalAveragePool -> ReduceMean over H and W, keeping the dims.

    Both are one reduction layer in TensorRT, but ONNX Runtime sums a GlobalAveragePool in one
    running float32 sum: over EfficientNet's squeeze-and-excitation maps (256x256 at 512 pixels)
    it is ~10x less accurate than its ReduceMean, enough to move scores by 1e-3."""
    for node in graph.nodes:
        if node.op != "GlobalAveragePool":
            continue
        node.op = "ReduceMean"
        if opset >= 18:  # axes became an input
            node.inputs.append(const(f"{node.name}_axes", [2, 3], np.int64))
            node.attrs = {"keepdims": 1}
        else:
            node.attrs = {"axes": [2, 3], "keepdims": 1}
