"""Small, named onnx-graphsurgeon edits that turn tf2onnx's network into a TensorRT-ready
detector, plus the metadata that travels inside the ONNX file."""

from __future__ import annotations

import json
import math
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
NMS_CANDIDATE_POOL = 5000  # EfficientNMS_TRT's fixed pre-NMS pool of candidates per image


def const(name: str, value: Any, dtype: type = np.float32) -> gs.Constant:
    return gs.Constant(name, np.asarray(value, dtype=dtype))


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


def box_deltas(graph: gs.Graph, encodings: gs.Tensor, shape: list,
               scales: tuple[float, ...], prefix: str = "") -> gs.Variable:
    """TFOD's box encodings reshaped to `shape` and divided by its box coder's scale factors
    (EfficientNMS_TRT decodes without variances)."""
    (reshaped,) = add_node(
        graph, "Reshape", [encodings, const(prefix + "box_shape", shape, np.int64)],
        [variable(prefix + "box_encodings", np.float32, shape)],
    )
    (deltas,) = add_node(graph, "Div", [reshaped, const(prefix + "box_coder_scales", scales)],
                         [variable(prefix + "box_deltas", np.float32, shape)])
    return deltas


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
    rewire(graph, network_input, normalized)
    graph.inputs = [image]
    return image


def anchors_center_size(anchors: np.ndarray) -> np.ndarray:
    """Corner anchors [N,4] -> [1,N,4] (y, x, h, w), computed as TFOD's box coder does (float32)."""
    a = anchors.astype(np.float32)
    height, width = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    center_y, center_x = a[:, 0] + height / np.float32(2), a[:, 1] + width / np.float32(2)
    return np.stack([center_y, center_x, height, width], axis=1)[None]


def corners_to_center_size(graph: gs.Graph, boxes: gs.Tensor, name: str) -> gs.Variable:
    """Boxes [..., 4] (y1, x1, y2, x2) -> (y, x, h, w), in the order of operations of TFOD's
    box coder (size = max - min, center = min + size / 2), like anchors_center_size."""
    shape = list(boxes.shape)
    half_shape = shape[:-1] + [2]
    low = slice_last_axis(graph, boxes, 0, 2, f"{name}_min", half_shape)
    high = slice_last_axis(graph, boxes, 2, 4, f"{name}_max", half_shape)
    (size,) = add_node(graph, "Sub", [high, low], [variable(f"{name}_size", np.float32,
                                                            half_shape)])
    (half,) = add_node(graph, "Div", [size, const(f"{name}_two", 2.0)],
                       [variable(f"{name}_half", np.float32, half_shape)])
    (center,) = add_node(graph, "Add", [low, half], [variable(f"{name}_center", np.float32,
                                                              half_shape)])
    (out,) = add_node(graph, "Concat", [center, size], [variable(name, np.float32, shape)],
                      axis=-1)
    return out


def add_crop_and_resize(graph: gs.Graph, features: gs.Tensor, rois: gs.Tensor, crop_height: int,
                        crop_width: int, name: str) -> gs.Variable:
    """Appends the CropAndResize plugin (v1): features NCHW [B,C,H,W], rois [B,R,4] normalised
    (y1, x1, y2, x2) -> [B,R,C,crop_height,crop_width], as tf.image.crop_and_resize samples."""
    batch, channels = features.shape[:2]
    (crops,) = add_node(
        graph, "CropAndResize", [features, rois],
        [variable(name, np.float32, [batch, rois.shape[1], channels, crop_height, crop_width])],
        plugin_version="1", crop_width=int(crop_width), crop_height=int(crop_height),
    )
    return crops


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
    graph: gs.Graph, nms_outputs: list[gs.Variable], score_threshold: float, prefix: str = ""
) -> list[gs.Variable]:
    """Removes what the plugin's dense path may emit below the threshold, and recounts
    (`prefix` keeps the names of a second guard apart)."""
    num, boxes, scores, classes = nms_outputs
    for tensor in nms_outputs:
        tensor.name = "unguarded_" + tensor.name

    def name(suffix: str) -> str:
        return f"{prefix}guard_{suffix}"

    def final(tensor: gs.Variable) -> gs.Variable:
        return variable(tensor.name[len("unguarded_"):], tensor.dtype, tensor.shape)

    (keep,) = add_node(graph, "GreaterOrEqual", [scores, const(name("threshold"),
                       score_threshold)], [variable(name("keep"), bool)])
    (keep_i,) = add_node(graph, "Cast", [keep], [variable(name("keep_i"), np.int32)],
                         to=onnx.TensorProto.INT32)
    (new_num,) = add_node(graph, "ReduceSum", [keep_i, const(name("axis"), [1], np.int64)],
                          [final(num)], keepdims=1)
    (keep_box,) = add_node(graph, "Unsqueeze", [keep, const(name("unsq"), [2], np.int64)],
                           [variable(name("keep_box"), bool)])
    (new_boxes,) = add_node(graph, "Where", [keep_box, boxes, const(name("zero_f"), 0.0)],
                            [final(boxes)])
    (new_scores,) = add_node(graph, "Where", [keep, scores, const(name("zero_s"), 0.0)],
                             [final(scores)])
    (new_classes,) = add_node(graph, "Where", [keep, classes, const(name("zero_i"), 0,
                                                                    np.int32)],
                              [final(classes)])
    return [new_num, new_boxes, new_scores, new_classes]


def clip_boxes(graph: gs.Graph, boxes: gs.Variable) -> gs.Variable:
    """Clips normalised boxes to [0, 1], as TFOD's post-processing clips to the image window."""
    final_name = boxes.name
    boxes.name = "unclipped_" + final_name
    (clipped,) = add_node(graph, "Clip", [boxes, const("clip_min", 0.0), const("clip_max", 1.0)],
                          [variable(final_name, np.float32, boxes.shape)])
    return clipped


def clip_to_window(graph: gs.Graph, boxes: gs.Tensor, window: gs.Tensor,
                   name: str) -> gs.Variable:
    """TFOD's clip_to_window with a window (0, 0, ymax, xmax): max(min(box, window_max), 0);
    `window` is [4] or per image [B,1,4] (ymax, xmax, ymax, xmax)."""
    shape = list(boxes.shape)
    (inside,) = add_node(graph, "Min", [boxes, window],
                         [variable(f"{name}_below_max", np.float32, shape)])
    (clipped,) = add_node(graph, "Max", [inside, const(f"{name}_zero", 0.0)],
                          [variable(name, np.float32, shape)])
    return clipped


def nonempty_boxes(graph: gs.Graph, boxes: gs.Tensor, name: str) -> gs.Variable:
    """[B,K,4] -> [B,K] bool: area (ymax - ymin) * (xmax - xmin) != 0, as TFOD's NMS keeps
    the boxes that its clip window did not flatten."""
    batch, count = boxes.shape[:2]
    half = [batch, count, 2]
    low = slice_last_axis(graph, boxes, 0, 2, f"{name}_min", half)
    high = slice_last_axis(graph, boxes, 2, 4, f"{name}_max", half)
    (size,) = add_node(graph, "Sub", [high, low], [variable(f"{name}_size", np.float32, half)])
    height = slice_last_axis(graph, size, 0, 1, f"{name}_height", [batch, count, 1])
    width = slice_last_axis(graph, size, 1, 2, f"{name}_width", [batch, count, 1])
    (area,) = add_node(graph, "Mul", [height, width],
                       [variable(f"{name}_area", np.float32, [batch, count, 1])])
    (area,) = add_node(graph, "Squeeze", [area, const(f"{name}_axis", [2], np.int64)],
                       [variable(f"{name}_area_flat", np.float32, [batch, count])])
    (empty,) = add_node(graph, "Equal", [area, const(f"{name}_zero_area", 0.0)],
                        [variable(f"{name}_empty", bool, [batch, count])])
    (nonempty,) = add_node(graph, "Not", [empty], [variable(name, bool, [batch, count])])
    return nonempty


TRUE_IMAGE_SHAPE = "true_image_shape"


def true_image_shape_input(batch_size: int) -> gs.Variable:
    """The optional graph input [B,2] float32: each image's height and width in pixels inside
    the (padded) network input, TFOD's true_image_shapes[:, :2]."""
    return variable(TRUE_IMAGE_SHAPE, np.float32, [batch_size, 2])


def per_image_window(graph: gs.Graph, true_shape: gs.Tensor, name: str) -> tuple:
    """true_image_shape [B,2] -> (window [B,1,4] = (h, w, h, w), its reciprocal [B,1,4])."""
    batch = true_shape.shape[0]
    (both,) = add_node(graph, "Concat", [true_shape, true_shape],
                       [variable(f"{name}_hwhw", np.float32, [batch, 4])], axis=1)
    (window,) = add_node(graph, "Unsqueeze", [both, const(f"{name}_axis", [1], np.int64)],
                         [variable(name, np.float32, [batch, 1, 4])])
    (inverse,) = add_node(graph, "Div", [const(f"{name}_one", 1.0), window],
                          [variable(f"{name}_inverse", np.float32, [batch, 1, 4])])
    return window, inverse


def clip_to_true_image(graph: gs.Graph, nms_outputs: list[gs.Variable], true_shape: gs.Tensor,
                       input_size: tuple[int, int], num_classes: int, max_per_class: int,
                       keep: int, to_true_image: bool) -> list[gs.Variable]:
    """TFOD's SSD clip window (ssd_meta_arch._compute_clip_window: (0, 0, h / H, w / W) of the
    true image shape h, w in the H x W input) applied as post_processing.
    multiclass_non_max_suppression does after its per-class NMS: boxes (normalised to the
    input) clipped to the window, the ones the clip emptied dropped, at most `max_per_class`
    per class and `keep` in all kept (score order, zero-filled, recounted); with
    `to_true_image` (change_coordinate_frame) the boxes are then normalised to the window."""
    num, boxes, scores, classes = nms_outputs
    batch = true_shape.shape[0]
    (fraction,) = add_node(graph, "Div", [true_shape, const(
        "true_window_input_size", list(input_size))], [variable(
            "true_window_fraction", np.float32, [batch, 2])])
    window, inverse = per_image_window(graph, fraction, "true_window")
    final = boxes.name
    boxes.name = "unwindowed_" + final
    clipped = clip_to_window(graph, boxes, window, "windowed_" + final if to_true_image
                             else final)
    nonempty = nonempty_boxes(graph, clipped, "boxes_nonempty")
    outputs = cap_per_class(graph, [num, clipped, scores, classes], num_classes, max_per_class,
                            keep, keep_mask=nonempty)
    if to_true_image:
        capped = outputs[1]
        capped.name = "input_frame_" + final
        (outputs[1],) = add_node(graph, "Mul", [capped, inverse],
                                 [variable(final, np.float32, capped.shape)])
    return outputs


def cap_per_class(graph: gs.Graph, nms_outputs: list[gs.Variable], num_classes: int,
                  max_per_class: int, keep: int, keep_mask: gs.Tensor | None = None,
                  prefix: str = "") -> list[gs.Variable]:
    """TFOD's max_detections_per_class, which EfficientNMS_TRT lacks: of the plugin's outputs
    (sorted by score) each class keeps its first `max_per_class`, then the best `keep` remain,
    in order, zero-filled and recounted like the plugin's own outputs (scores are >= 0).

    `keep_mask` [B,candidates] (bool) drops more detections after the per-class count (TFOD
    prunes boxes left empty by the clip window after its per-class NMS, before the total
    cap); `prefix` keeps the names of a second use apart."""
    num, boxes, scores, classes = nms_outputs
    batch, candidates = scores.shape
    final = [t.name for t in nms_outputs]
    for tensor in nms_outputs:
        tensor.name = "uncapped_" + tensor.name

    def node(op: str, inputs: list, name: str, dtype=np.float32, shape=None, **attrs):
        return add_node(graph, op, inputs, [variable(f"{prefix}cap_{name}", dtype, shape)],
                        **attrs)[0]

    def const(name: str, value: Any, dtype: type = np.float32) -> gs.Constant:
        return gs.Constant(f"{prefix}{name}", np.asarray(value, dtype=dtype))

    axis2 = const("cap_axis2", [2], np.int64)
    valid = node("Less", [const("cap_positions", np.arange(candidates)[None], np.int32), num],
                 "valid", bool, [batch, candidates])
    class_index = node("Unsqueeze", [classes, axis2], "class_index", np.int32,
                       [batch, candidates, 1])
    one_hot = node("Equal", [class_index, const("cap_class_ids",
                                                np.arange(num_classes)[None, None], np.int32)],
                   "one_hot", bool, [batch, candidates, num_classes])
    one_hot = node("Cast", [one_hot], "one_hot_f", shape=[batch, candidates, num_classes],
                   to=onnx.TensorProto.FLOAT)
    counts = prefix_sum(graph, one_hot, f"{prefix}cap_counts")
    rank = node("GatherElements", [counts, class_index], "rank", shape=[batch, candidates, 1],
                axis=2)
    rank = node("Squeeze", [rank, axis2], "rank_flat", shape=[batch, candidates])
    within = node("LessOrEqual", [rank, const("cap_max_per_class", float(max_per_class))],
                  "within", bool, [batch, candidates])
    kept = node("And", [valid, within], "kept", bool, [batch, candidates])
    if keep_mask is not None:  # counted for the per-class cap above, dropped here
        kept = node("And", [kept, keep_mask], "kept_nonempty", bool, [batch, candidates])
    ranked = node("Where", [kept, scores, const("cap_dropped", -1.0)], "ranked",
                  shape=[batch, candidates])
    best, index = add_node(graph, "TopK", [ranked, const("cap_keep", [keep], np.int64)],
                           [variable(f"{prefix}cap_best", np.float32, [batch, keep]),
                            variable(f"{prefix}cap_index", np.int64, [batch, keep])], axis=1)
    present = node("GreaterOrEqual", [best, const("cap_zero", 0.0)], "present", bool,
                   [batch, keep])
    present_i = node("Cast", [present], "present_i", np.int32, [batch, keep],
                     to=onnx.TensorProto.INT32)
    new_num = add_node(graph, "ReduceSum", [present_i, const("cap_axis1b", [1], np.int64)],
                       [variable(final[0], np.int32, [batch, 1])], keepdims=1)[0]
    box_index = node("Unsqueeze", [index, axis2], "box_index", np.int64, [batch, keep, 1])
    box_index = node("Expand", [box_index, const("cap_box_shape", [batch, keep, 4], np.int64)],
                     "box_index4", np.int64, [batch, keep, 4])
    picked_boxes = node("GatherElements", [boxes, box_index], "boxes", shape=[batch, keep, 4],
                        axis=1)
    picked_classes = node("GatherElements", [classes, index], "classes", np.int32,
                          [batch, keep], axis=1)
    present4 = node("Unsqueeze", [present, axis2], "present4", bool, [batch, keep, 1])
    outputs = [new_num]
    for value, mask, zero, name, shape in [
        (picked_boxes, present4, const("cap_zero_f", 0.0), final[1], [batch, keep, 4]),
        (best, present, const("cap_zero_s", 0.0), final[2], [batch, keep]),
        (picked_classes, present, const("cap_zero_i", 0, np.int32), final[3], [batch, keep]),
    ]:
        outputs += add_node(graph, "Where", [mask, value, zero],
                            [variable(name, value.dtype, shape)])
    return outputs


def prefix_sum(graph: gs.Graph, values: gs.Variable, name: str) -> gs.Variable:
    """ONNX ``CumSum(values, axis=1)`` of a static float32 [B, N, C], built as two small MatMuls
    with triangular constants over blocks of about sqrt(N): TensorRT 8.6's ONNX parser turns
    CumSum into a loop of N sequential steps (N = 1200 after a Faster R-CNN second-stage NMS,
    5000 in a keep_aspect SSD), the MatMuls are two GEMMs. Exact for counts (0/1 values summed
    in float32, far below 2**24)."""
    batch, length, channels = values.shape
    block = math.ceil(math.sqrt(length))
    blocks = math.ceil(length / block)
    padding = block * blocks - length

    def out(suffix: str, shape: list) -> gs.Variable:  # "": the result, named ``name``
        return variable(f"{name}_{suffix}" if suffix else name, np.float32, shape)

    def const(suffix: str, value: Any) -> gs.Constant:
        return gs.Constant(f"{name}_{suffix}", np.asarray(value))

    padded = values
    if padding:
        (padded,) = add_node(graph, "Concat", [values, const(
            "zeros", np.zeros((batch, padding, channels), np.float32))],
            [out("padded", [batch, length + padding, channels])], axis=1)
    (grid,) = add_node(graph, "Reshape", [padded, const(
        "grid_shape", np.array([batch, blocks, block, channels], np.int64))],
        [out("grid", [batch, blocks, block, channels])])
    inclusive = np.tril(np.ones((block, block), np.float32))  # row i sums columns 0..i
    (within,) = add_node(graph, "MatMul", [const("within_block", inclusive), grid],
                         [out("within", [batch, blocks, block, channels])])
    (totals,) = add_node(graph, "ReduceSum", [grid, const("axis2", np.array([2], np.int64))],
                         [out("block_totals", [batch, blocks, channels])], keepdims=0)
    earlier = np.tril(np.ones((blocks, blocks), np.float32), k=-1)  # blocks before this one
    (before,) = add_node(graph, "MatMul", [const("earlier_blocks", earlier), totals],
                         [out("before", [batch, blocks, channels])])
    (before,) = add_node(graph, "Unsqueeze", [before, const("axis2u", np.array([2], np.int64))],
                         [out("before4", [batch, blocks, 1, channels])])
    (sums,) = add_node(graph, "Add", [within, before], [out("sums", [batch, blocks, block,
                                                                     channels])])
    (flat,) = add_node(graph, "Reshape", [sums, const(
        "flat_shape", np.array([batch, length + padding, channels], np.int64))],
        [out("flat" if padding else "", [batch, length + padding, channels])])
    if padding:
        (flat,) = add_node(graph, "Slice", [flat, const("start", np.array([0], np.int64)),
                                            const("end", np.array([length], np.int64)),
                                            const("axis1", np.array([1], np.int64))],
                           [out("", [batch, length, channels])])
    return flat


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
