"""FP16 ONNX graphs: ONNX Runtime's float16 converter with the sensitive part and the plugins
kept in FP32."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from onnxruntime.transformers import float16

from tfod_trt.convert.graph_edits import check_model
from tfod_trt.metadata import PLUGIN_OPS
from tfod_trt.quant.sensitive import (
    QuantizeError,
    check_node_names,
    is_fp16,
    sensitive_nodes,
    toposorted,
)

log = logging.getLogger("quantize")


def convert_fp16(model: onnx.ModelProto, path: Path | str = "the ONNX") -> onnx.ModelProto:
    """The FP16 / mixed copy of an FP32 graph: weights and activations FP16, graph inputs and
    outputs, the sensitive nodes and the plugins FP32 (Casts in between)."""

    check_node_names(model, path)
    if is_fp16(model):
        raise QuantizeError(f"{path} already computes in FP16")
    blocked = sensitive_nodes(model)
    op_block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | PLUGIN_OPS)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the converter changes the model it is given
    half = float16.convert_float_to_float16(
        copy, keep_io_types=True, op_block_list=op_block, node_block_list=sorted(blocked),
        disable_shape_infer=True)
    half = toposorted(_drop_fp16_round_trips(half), model)
    check_model(half)
    log.info("converted to FP16; %d sensitive nodes stay FP32", len(blocked))
    return half




def _drop_fp16_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Removes the converter's Cast to FP16 and back between two FP32 nodes (e.g. the box
    deltas between their Div and the NMS plugin): the value stays FP32 and keeps its name."""
    graph = gs.import_onnx(model)
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    outputs = {id(t) for t in graph.outputs}
    for cast in list(graph.nodes):
        if cast.op != "Cast" or cast.attrs.get("to") != half or id(cast.outputs[0]) in outputs:
            continue
        middle = cast.outputs[0]
        back = middle.outputs
        if not back or any(n.op != "Cast" or n.attrs.get("to") != single for n in back):
            continue
        source = cast.inputs[0]
        name = middle.name
        for node in back:
            target = node.outputs[0]
            if id(target) in outputs:  # a graph output keeps its name
                name, target.name = target.name, f"{target.name}_removed"
            for consumer in list(target.outputs):
                for i, tensor in enumerate(consumer.inputs):
                    if tensor is target:
                        consumer.inputs[i] = source
            graph.outputs = [source if t is target else t for t in graph.outputs]
            node.outputs.clear()
        cast.outputs.clear()
        middle.name = f"{middle.name}_removed"
        source.name = name
    graph.cleanup()
    return gs.export_onnx(graph)


