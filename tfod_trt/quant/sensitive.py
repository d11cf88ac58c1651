"""Which part of a graph stays FP32 in reduced precision (anchors, box decoding, what feeds
the plugins and everything after them), and what a graph's precision already is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tfod_trt.errors import UsageError
from tfod_trt.metadata import NMS_PLUGIN, PLUGIN_OPS, TRUE_IMAGE_SHAPE

# Parts of the graph that stay FP32 in reduced precision, by name (TensorRT builds too).
SENSITIVE_NAME_PARTS = ("anchors", "box_deltas")
# Plugin inputs that carry boxes (op -> input positions): their producers' branch stays FP32.
BOX_INPUTS = {NMS_PLUGIN: (0, 2), "CropAndResize": (1,), "CropAndResizeDynamic": (1,)}
# Ops that only move values: a plugin input reached through them (per-class NMS transposes and
# repeats the heads) keeps them and the op that made the values FP32.
LAYOUT_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Expand"}


class QuantizeError(UsageError):
    """Why no typed graph was made, as one line naming the file and the problem."""


# ---------------------------------------------------------------------------------------------
# Which nodes are sensitive.


def sensitive_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that must stay FP32 (see the module docstring)."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output if out}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def ancestors(tensors: list[str]) -> set[str]:
        seen: set[str] = set()
        todo = [producer[t] for t in tensors if t in producer]
        while todo:
            node = todo.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            todo += [producer[t] for t in node.input if t in producer]
        return seen

    plugins = [n for n in nodes if n.op_type in PLUGIN_OPS]
    sensitive: set[str] = set()
    # the plugins, the users of the true_image_shape input (clip windows), everything after them
    todo = [*plugins, *consumers.get(TRUE_IMAGE_SHAPE, [])]
    while todo:
        node = todo.pop()
        if node.name in sensitive:
            continue
        sensitive.add(node.name)
        for out in node.output:
            todo += consumers.get(out, [])
    box_inputs, other_inputs = [], []
    for plugin in plugins:
        for i, name in enumerate(plugin.input):
            if name:
                (box_inputs if i in BOX_INPUTS.get(plugin.op_type, ()) else other_inputs).append(
                    name)
                node = producer.get(name)
                while node is not None:  # up through layout ops to the op that made the values
                    sensitive.add(node.name)
                    node = (producer.get(node.input[0]) if node.op_type in LAYOUT_OPS
                            else None)
    sensitive |= ancestors(box_inputs) - ancestors(other_inputs)
    for node in nodes:
        if any(part in name for part in SENSITIVE_NAME_PARTS
               for name in [node.name, *node.output]):
            sensitive.add(node.name)
    return sensitive


def check_node_names(model: onnx.ModelProto, path: Path | str) -> None:
    """A QuantizeError when a node has no name (the sensitive part is found by names)."""
    unnamed = [i for i, n in enumerate(model.graph.node) if not n.name]
    if unnamed:
        raise QuantizeError(f"{path}: nodes {unnamed[:5]} have no name; the ONNX must come "
                            "from create_onnx.py")


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether the graph is already explicitly quantized."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def is_fp16(model: onnx.ModelProto) -> bool:
    """Whether the graph already computes in FP16 (has FP16 initializers or Casts to FP16)."""
    half = onnx.TensorProto.FLOAT16
    return (any(t.data_type == half for t in model.graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == half
                                                for a in n.attribute)
                   for n in model.graph.node))


def plugin_free_prefix(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph from its inputs to the inputs of its plugins that need no plugin output
    (for SSD: the NMS inputs; for Faster R-CNN: the first-stage NMS inputs), for ONNX Runtime."""
    graph = gs.import_onnx(model)
    after: set[str] = set()
    for node in graph.toposort().nodes:
        if node.op in PLUGIN_OPS or any(t.name in after for t in node.inputs):
            after |= {t.name for t in node.outputs}
    tensors = graph.tensors()
    wanted: list[str] = []
    for node in graph.nodes:
        if node.op in PLUGIN_OPS:
            wanted += [t.name for t in node.inputs if isinstance(t, gs.Variable)
                       and t.name not in after and t.name not in wanted]
    if not wanted:
        raise QuantizeError("the graph has no TensorRT plugin inputs to calibrate up to")
    graph.outputs = [tensors[name] for name in wanted]
    for tensor in graph.outputs:
        tensor.dtype = tensor.dtype or np.float32
    graph.cleanup(remove_unused_graph_inputs=True)
    prefix = gs.export_onnx(graph)
    del prefix.metadata_props[:]
    return prefix


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes that get Q/DQ inputs: convolutions (MatMul, Gemm) of the plugin-free prefix
    that are not sensitive."""
    sensitive = sensitive_nodes(model)
    prefix = {n.name for n in plugin_free_prefix(model).graph.node}
    return [n.name for n in model.graph.node
            if n.op_type in QUANTIZED_OPS and n.name in prefix and n.name not in sensitive]



QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def unquantize_sensitive_inputs(model: onnx.ModelProto, sensitive: set[str]
                                 ) -> onnx.ModelProto:
    """Feeds the sensitive nodes the FP32 tensor where the quantizer gave them the output of a
    Q/DQ pair that it made for a quantized neighbour (e.g. the box head reading the feature
    map that the class head quantizes)."""
    graph = gs.import_onnx(model)
    for node in graph.nodes:
        if node.name not in sensitive:
            continue
        for i, tensor in enumerate(node.inputs):
            dq = tensor.inputs[0] if tensor.inputs else None
            q = dq.inputs[0].inputs[0] if dq is not None and dq.op == "DequantizeLinear" \
                and dq.inputs[0].inputs else None
            if q is not None and q.op == "QuantizeLinear":
                node.inputs[i] = q.inputs[0]
    graph.cleanup()
    return gs.export_onnx(graph)


def toposorted(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its nodes in topological order (the converter appends its input Casts)
    and the metadata of ``source``."""
    graph = gs.import_onnx(model)
    graph.toposort()
    graph.cleanup()
    sorted_model = gs.export_onnx(graph)
    del sorted_model.opset_import[:]
    sorted_model.opset_import.extend(source.opset_import)
    del sorted_model.metadata_props[:]
    sorted_model.metadata_props.extend(source.metadata_props)
    sorted_model.ir_version = source.ir_version
    return sorted_model
