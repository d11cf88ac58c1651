"""Small, named onnx-graphsurgeon edits that turn tf2onnx's network into a TensorRT-ready
detector, plus the metadata that travels inside the ONNX file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

METADATA_KEY = "tfod_trt"
OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
NMS_PLUGIN = "EfficientNMS_TRT"
# Below this score threshold EfficientNMS_TRT takes a "dense" path that can emit below-threshold
# boxes (../design/plugins.md); the graph then gets a guard that removes them.
NMS_SAFE_SCORE_FLOOR = 0.007


def const(name: str, value: Any, dtype: type = np.float32) -> gs.Constant:
    return gs.Constant(name, np.asarray(value, dtype=dtype))


def add_node(graph: gs.Graph, op: str, inputs: list, outputs: list, **attrs) -> list:
    graph.nodes.append(gs.Node(op, name=f"{outputs[0].name}/{op}", inputs=inputs, outputs=outputs,
                               attrs=attrs))
    return outputs


def variable(name: str, dtype: Any = np.float32, shape: list | None = None) -> gs.Variable:
    return gs.Variable(name, dtype=dtype, shape=shape)


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
    image = variable("input_tensor", np.float32, shape)
    nhwc = image
    if input_format == "NCHW":
        (nhwc,) = add_node(graph, "Transpose", [image], [variable("input_nhwc")], perm=[0, 2, 3, 1])
    current = nhwc
    if any(s != 1.0 for s in scale):
        (current,) = add_node(graph, "Mul", [current, const("norm_scale", scale)],
                              [variable("input_scaled")])
    (normalized,) = add_node(graph, "Add", [current, const("norm_offset", offset)],
                             [variable("input_normalized")])
    for node in graph.nodes:
        node.inputs = [normalized if t is network_input else t for t in node.inputs]
    graph.inputs = [image]
    return image


def anchors_center_size(anchors: np.ndarray) -> np.ndarray:
    """Corner anchors [N,4] -> [1,N,4] (y, x, h, w), computed as TFOD's box coder does (float32)."""
    a = anchors.astype(np.float32)
    height, width = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    center_y, center_x = a[:, 0] + height / np.float32(2), a[:, 1] + width / np.float32(2)
    return np.stack([center_y, center_x, height, width], axis=1)[None]


def add_efficient_nms(
    graph: gs.Graph, boxes: gs.Tensor, scores: gs.Tensor, anchors: gs.Tensor | None,
    batch_size: int, *, score_threshold: float, iou_threshold: float, max_detections: int,
    score_activation: bool, background_class: int = -1, box_coding: int = 1, prefix: str = "",
) -> list[gs.Variable]:
    """Appends EfficientNMS_TRT; returns its four outputs with shapes and dtypes set."""
    k = max_detections
    outputs = [
        variable(prefix + "num_detections", np.int32, [batch_size, 1]),
        variable(prefix + "detection_boxes", np.float32, [batch_size, k, 4]),
        variable(prefix + "detection_scores", np.float32, [batch_size, k]),
        variable(prefix + "detection_classes", np.int32, [batch_size, k]),
    ]
    inputs = [boxes, scores] + ([anchors] if anchors is not None else [])
    graph.nodes.append(gs.Node(
        NMS_PLUGIN, name=prefix + "efficient_nms", inputs=inputs, outputs=outputs,
        attrs={
            "plugin_version": "1",
            "background_class": background_class,
            "max_output_boxes": k,
            "score_threshold": float(score_threshold),
            "iou_threshold": float(iou_threshold),
            "score_activation": int(score_activation),
            "box_coding": box_coding,
            "class_agnostic": 0,
        },
    ))
    return outputs


def guard_low_threshold(
    graph: gs.Graph, nms_outputs: list[gs.Variable], score_threshold: float
) -> list[gs.Variable]:
    """Removes what the plugin's dense path may emit below the threshold, and recounts."""
    num, boxes, scores, classes = nms_outputs
    for tensor in nms_outputs:
        tensor.name = "unguarded_" + tensor.name
    (keep,) = add_node(graph, "GreaterOrEqual", [scores, const("guard_threshold",
                       score_threshold)], [variable("guard_keep", bool)])
    (keep_i,) = add_node(graph, "Cast", [keep], [variable("guard_keep_i", np.int32)],
                         to=onnx.TensorProto.INT32)
    (new_num,) = add_node(graph, "ReduceSum", [keep_i, const("guard_axis", [1], np.int64)],
                          [variable(num.name[len("unguarded_"):], np.int32, num.shape)],
                          keepdims=1)
    (keep_box,) = add_node(graph, "Unsqueeze", [keep, const("guard_unsq", [2], np.int64)],
                           [variable("guard_keep_box", bool)])
    (new_boxes,) = add_node(graph, "Where", [keep_box, boxes, const("guard_zero_f", 0.0)],
                            [variable(boxes.name[len("unguarded_"):], np.float32, boxes.shape)])
    (new_scores,) = add_node(graph, "Where", [keep, scores, const("guard_zero_s", 0.0)],
                             [variable(scores.name[len("unguarded_"):], np.float32,
                                       scores.shape)])
    (new_classes,) = add_node(graph, "Where", [keep, classes, const("guard_zero_i", 0, np.int32)],
                              [variable(classes.name[len("unguarded_"):], np.int32,
                                        classes.shape)])
    return [new_num, new_boxes, new_scores, new_classes]


def clip_boxes(graph: gs.Graph, boxes: gs.Variable) -> gs.Variable:
    """Clips normalised boxes to [0, 1], as TFOD's post-processing clips to the image window."""
    final_name = boxes.name
    boxes.name = "unclipped_" + final_name
    (clipped,) = add_node(graph, "Clip", [boxes, const("clip_min", 0.0), const("clip_max", 1.0)],
                          [variable(final_name, np.float32, boxes.shape)])
    return clipped


PLUGIN_OPS = {NMS_PLUGIN, "CropAndResize", "CropAndResizeDynamic"}


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


def set_metadata(model: onnx.ModelProto, metadata: dict) -> None:
    """Stores what inference needs later (preprocessing, classes, ...) in the ONNX file."""
    entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
    entry.value = json.dumps(metadata, sort_keys=True)


def read_metadata(model: onnx.ModelProto | str | Path) -> dict:
    """The converter's metadata of an ONNX file, or {} when it has none."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes a file through a temporary sibling and a rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: onnx.ModelProto, path: str | Path) -> None:
    """Checks and saves an ONNX model atomically (models over 2 GB are not expected here)."""
    atomic_write_bytes(path, model.SerializeToString())
