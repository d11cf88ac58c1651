"""Graph edits after the network: box decoding inputs, EfficientNMS_TRT and CropAndResize nodes,
the low-threshold guard, clipping to the true image and the per-class / total caps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tfod_trt.convert.graph_edits import (
    add_node,
    broadcast_dims,
    const,
    reshape_dims,
    slice_last_axis,
    variable,
)
from tfod_trt.metadata import NMS_PLUGIN, TRUE_IMAGE_SHAPE

# Below this score threshold EfficientNMS_TRT takes a "dense" path that can emit below-threshold
# boxes (docs/design.md, EfficientNMS_TRT step 5); the graph then gets a guard that removes them.
NMS_SAFE_SCORE_FLOOR = 0.007
NMS_CANDIDATE_POOL = 5000  # EfficientNMS_TRT's fixed pre-NMS pool of candidates per image


def box_deltas(graph: gs.Graph, encodings: gs.Tensor, shape: list,
               scales: tuple[float, ...], prefix: str = "") -> gs.Variable:
    """TFOD's box encodings reshaped to `shape` and divided by its box coder's scale factors
    (EfficientNMS_TRT decodes without variances)."""
    (reshaped,) = add_node(
        graph, "Reshape", [encodings, reshape_dims(prefix + "box_shape", shape)],
        [variable(prefix + "box_encodings", np.float32, shape)],
    )
    (deltas,) = add_node(graph, "Div", [reshaped, const(prefix + "box_coder_scales", scales)],
                         [variable(prefix + "box_deltas", np.float32, shape)])
    return deltas


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
    (y1, x1, y2, x2) -> [B,R,C,crop_height,crop_width], as tf.image.crop_and_resize samples.
    A dynamic batch takes CropAndResizeDynamic (same inputs and output): TensorRT 8.6's static
    CropAndResize cannot take shapes chosen at run time."""
    batch, channels = features.shape[:2]
    op = "CropAndResize" if isinstance(rois.shape[0], int) else "CropAndResizeDynamic"
    (crops,) = add_node(
        graph, op, [features, rois],
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


def true_window(graph: gs.Graph, true_shape: gs.Tensor,
                input_size: tuple[int, int]) -> tuple[gs.Variable, gs.Variable]:
    """TFOD's SSD clip window of each image, (0, 0, h / H, w / W) for its true image shape
    h, w in the H x W input, as per_image_window's (window [B,1,4], reciprocal)."""
    (fraction,) = add_node(graph, "Div", [true_shape, const(
        "true_window_input_size", list(input_size))], [variable(
            "true_window_fraction", np.float32, [true_shape.shape[0], 2])])
    return per_image_window(graph, fraction, "true_window")


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
    window, inverse = true_window(graph, true_shape, input_size)
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
    cap = CapGraph(graph, prefix)
    axis2 = cap.const("cap_axis2", [2], np.int64)
    kept = _within_class_cap(cap, num, classes, (batch, candidates), num_classes,
                             max_per_class, axis2)
    if keep_mask is not None:  # counted for the per-class cap above, dropped here
        kept = cap.node("And", [kept, keep_mask], "kept_nonempty", bool, [batch, candidates])
    best, index, present, new_num = best_kept(cap, kept, scores, keep, final[0])
    return [new_num, *gather_kept(cap, boxes, classes, best, index, present, final[1:], axis2)]


class CapGraph:
    """Appends :func:`cap_per_class`'s nodes and constants, their names prefixed."""

    def __init__(self, graph: gs.Graph, prefix: str) -> None:
        self.graph, self.prefix = graph, prefix

    def node(self, op: str, inputs: list, name: str, dtype: Any = np.float32,
             shape: list | None = None, **attrs: Any) -> gs.Variable:
        """A node with one output, named ``{prefix}cap_{name}``."""
        return add_node(self.graph, op, inputs,
                        [variable(f"{self.prefix}cap_{name}", dtype, shape)], **attrs)[0]

    def const(self, name: str, value: Any, dtype: type = np.float32) -> gs.Constant:
        return gs.Constant(f"{self.prefix}{name}", np.asarray(value, dtype=dtype))


def _within_class_cap(cap: CapGraph, num: gs.Tensor, classes: gs.Tensor, shape: tuple,
                      num_classes: int, max_per_class: int, axis2: gs.Constant) -> gs.Variable:
    """[B,candidates] bool (``shape``): the valid detections (the first `num`) among the
    first `max_per_class` of their class (a running count of one-hot classes)."""
    batch, candidates = shape
    valid = cap.node("Less", [cap.const("cap_positions", np.arange(candidates)[None], np.int32),
                              num], "valid", bool, [batch, candidates])
    class_index = cap.node("Unsqueeze", [classes, axis2], "class_index", np.int32,
                           [batch, candidates, 1])
    one_hot = cap.node("Equal", [class_index, cap.const(
        "cap_class_ids", np.arange(num_classes)[None, None], np.int32)],
                       "one_hot", bool, [batch, candidates, num_classes])
    one_hot = cap.node("Cast", [one_hot], "one_hot_f", shape=[batch, candidates, num_classes],
                       to=onnx.TensorProto.FLOAT)
    counts = prefix_sum(cap.graph, one_hot, f"{cap.prefix}cap_counts")
    rank = cap.node("GatherElements", [counts, class_index], "rank",
                    shape=[batch, candidates, 1], axis=2)
    rank = cap.node("Squeeze", [rank, axis2], "rank_flat", shape=[batch, candidates])
    within = cap.node("LessOrEqual", [rank, cap.const("cap_max_per_class",
                                                      float(max_per_class))],
                      "within", bool, [batch, candidates])
    return cap.node("And", [valid, within], "kept", bool, [batch, candidates])


def best_kept(cap: CapGraph, kept: gs.Tensor, scores: gs.Tensor, keep: int,
               num_name: str) -> tuple[gs.Variable, gs.Variable, gs.Variable, gs.Variable]:
    """The best `keep` kept scores [B,keep] and their positions, which of them are present
    (scores >= 0: dropped ones rank at -1) and their count [B,1] named `num_name`."""
    batch, candidates = scores.shape
    ranked = cap.node("Where", [kept, scores, cap.const("cap_dropped", -1.0)], "ranked",
                      shape=[batch, candidates])
    best, index = add_node(cap.graph, "TopK", [ranked, cap.const("cap_keep", [keep], np.int64)],
                           [variable(f"{cap.prefix}cap_best", np.float32, [batch, keep]),
                            variable(f"{cap.prefix}cap_index", np.int64, [batch, keep])], axis=1)
    present = cap.node("GreaterOrEqual", [best, cap.const("cap_zero", 0.0)], "present", bool,
                       [batch, keep])
    present_i = cap.node("Cast", [present], "present_i", np.int32, [batch, keep],
                         to=onnx.TensorProto.INT32)
    new_num = add_node(cap.graph, "ReduceSum",
                       [present_i, cap.const("cap_axis1b", [1], np.int64)],
                       [variable(num_name, np.int32, [batch, 1])], keepdims=1)[0]
    return best, index, present, new_num


def gather_kept(cap: CapGraph, boxes: gs.Tensor, classes: gs.Tensor, best: gs.Tensor,
                 index: gs.Tensor, present: gs.Tensor, names: list[str],
                 axis2: gs.Constant) -> list[gs.Variable]:
    """The boxes, scores and classes at `index`, zero where not present, named `names`;
    `classes` [B,candidates], or [candidates] when every image's candidates have the same."""
    batch, keep = best.shape
    box_index = cap.node("Unsqueeze", [index, axis2], "box_index", np.int64, [batch, keep, 1])
    box_index = cap.node("Expand", [box_index, broadcast_dims(f"{cap.prefix}cap_box_shape",
                                                              [batch, keep, 4])],
                         "box_index4", np.int64, [batch, keep, 4])
    picked_boxes = cap.node("GatherElements", [boxes, box_index], "boxes",
                            shape=[batch, keep, 4], axis=1)
    picked_classes = (cap.node("Gather", [classes, index], "classes", np.int32, [batch, keep])
                      if len(classes.shape) == 1 else
                      cap.node("GatherElements", [classes, index], "classes", np.int32,
                               [batch, keep], axis=1))
    present4 = cap.node("Unsqueeze", [present, axis2], "present4", bool, [batch, keep, 1])
    outputs = []
    for value, mask, zero, name, shape in [
        (picked_boxes, present4, cap.const("cap_zero_f", 0.0), names[0], [batch, keep, 4]),
        (best, present, cap.const("cap_zero_s", 0.0), names[1], [batch, keep]),
        (picked_classes, present, cap.const("cap_zero_i", 0, np.int32), names[2],
         [batch, keep]),
    ]:
        outputs += add_node(cap.graph, "Where", [mask, value, zero],
                            [variable(name, value.dtype, shape)])
    return outputs


def prefix_sum(graph: gs.Graph, values: gs.Variable, name: str) -> gs.Variable:
    """ONNX ``CumSum(values, axis=1)`` of a float32 [B, N, C] (N, C static; B may be the dynamic
    batch), built as two small MatMuls
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
        padded = _zero_rows(graph, values, padding, out("padded", [batch, length + padding,
                                                                    channels]), name)
    (grid,) = add_node(graph, "Reshape", [padded, reshape_dims(
        f"{name}_grid_shape", [batch, blocks, block, channels])],
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
    (flat,) = add_node(graph, "Reshape", [sums, reshape_dims(
        f"{name}_flat_shape", [batch, length + padding, channels])],
        [out("flat" if padding else "", [batch, length + padding, channels])])
    if padding:
        (flat,) = add_node(graph, "Slice", [flat, const("start", np.array([0], np.int64)),
                                            const("end", np.array([length], np.int64)),
                                            const("axis1", np.array([1], np.int64))],
                           [out("", [batch, length, channels])])
    return flat


def _zero_rows(graph: gs.Graph, values: gs.Variable, rows: int, padded: gs.Variable,
               name: str) -> gs.Variable:
    """[B, N, C] -> ``padded`` [B, N + rows, C], the new rows zero: a Concat with a zero
    constant for a static batch, a Pad for the dynamic batch (whose size no constant knows)."""
    batch, _, channels = values.shape
    if isinstance(batch, int):
        zeros = gs.Constant(f"{name}_zeros", np.zeros((batch, rows, channels), np.float32))
        return add_node(graph, "Concat", [values, zeros], [padded], axis=1)[0]
    pads = const(f"{name}_pads", [0, 0, 0, 0, rows, 0], np.int64)
    return add_node(graph, "Pad", [values, pads], [padded], mode="constant")[0]
