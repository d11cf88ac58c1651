"""Per-class NMS: EfficientNMS_TRT run once per image and class, side by side, then the best
detections of all classes merged (TFOD's multiclass NMS: per-class NMS, per-class cap, total
cap).

Why: the plugin sorts the candidates of an image in one CUDA thread block (a segmented radix
sort with one segment per image). An SSD MobileNet v2 with 90 classes has 1917 x 90 = 172,530
candidates per image, all of them above TFOD's usual threshold of 1e-8: one long sort on one
multiprocessor dominates the engine's latency. Given every (image, class) pair as an image of
its own with one class, the plugin sorts B x C segments of N anchors in parallel, and its
per-image output cap becomes TFOD's max_detections_per_class; a TopK over the B x C x K1
survivors then keeps the best of all classes (docs/design.md, "Per-class NMS").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from tfod_trt.convert.graph_edits import add_node, const, variable
from tfod_trt.convert.postprocess import (
    NMS_SAFE_SCORE_FLOOR,
    CapGraph,
    add_efficient_nms,
    best_kept,
    clip_to_window,
    gather_kept,
    nonempty_boxes,
)

PREFIX = "class_"  # the plugin's outputs: class_num_detections, class_detection_boxes, ...
# The plugin's filter path (thresholds >= 0.007) launches one thread per image in one block:
# beyond 1024 images it fails. More segments take the dense path (threshold 0 in the plugin,
# the real one applied in the merge), which sorts each segment's N anchors whole.
FILTER_PATH_MAX_SEGMENTS = 1024


@dataclass(frozen=True)
class ClipWindow:
    """Where TFOD clips the merged detections before its total cap (boxes the clip empties
    are dropped): `window` [4] or per image [B,1,4] as (ymax, xmax, ymax, xmax); with
    `inverse` (its reciprocal) the kept boxes are then normalised to the window
    (change_coordinate_frame)."""

    window: gs.Tensor
    inverse: gs.Tensor | None = None


def add_per_class_nms(
    graph: gs.Graph, deltas: gs.Tensor, logits: gs.Tensor, anchors: gs.Tensor, batch: int | str, *,
    score_threshold: float, iou_threshold: float, max_per_class: int, max_total: int,
    clip: ClipWindow | None = None,
) -> list[gs.Variable]:
    """Box deltas [B,N,4] and class logits [B,N,C] (sigmoid scores, no background column),
    anchors [1,N,4] (y, x, h, w) -> num_detections [B,1], detection_boxes [B,K,4] (corners),
    detection_scores [B,K], detection_classes [B,K]: per class at most `max_per_class` (no
    class can place more than K among the best K: the plugin keeps min(max_per_class, K)), then
    clipped to the window (default: the whole input, [0, 1]), the emptied ones dropped, and the
    best K = `max_total` kept, zero-filled after the count."""
    _, num_anchors, num_classes = logits.shape
    if min(max_per_class, num_anchors) * num_classes < max_total:
        raise ValueError(f"per-class NMS: {num_classes} classes of at most "
                         f"{min(max_per_class, num_anchors)} detections cannot fill {max_total}")
    # a dynamic batch (a named dimension) may exceed any limit
    segments = batch * num_classes if isinstance(batch, int) else f"{batch}_x_classes"
    many = not isinstance(segments, int) or segments > FILTER_PATH_MAX_SEGMENTS
    dense_only = many and score_threshold >= NMS_SAFE_SCORE_FLOOR
    nms = add_efficient_nms(
        graph, _per_class_deltas(graph, deltas, batch, num_classes),
        _per_class_logits(graph, logits, segments), anchors, segments,
        score_threshold=0.0 if dense_only else score_threshold, iou_threshold=iou_threshold,
        max_detections=min(max_per_class, max_total, num_anchors), score_activation=True,
        prefix=PREFIX)
    clip = clip or ClipWindow(const("merge_unit_window", [1.0, 1.0, 1.0, 1.0]))
    return _merge_classes(graph, nms, batch, num_classes, score_threshold, max_total, clip,
                          dense=dense_only or score_threshold < NMS_SAFE_SCORE_FLOOR)


def _per_class_logits(graph: gs.Graph, logits: gs.Tensor, segments: int | str) -> gs.Variable:
    """[B,N,C] -> [B*C,N,1]: each class of each image a segment of one class."""
    _, num_anchors, num_classes = logits.shape
    (by_class,) = add_node(graph, "Transpose", [logits], [variable(
        "logits_by_class", np.float32, [logits.shape[0], num_classes, num_anchors])],
        perm=[0, 2, 1])
    (flat,) = add_node(graph, "Reshape", [by_class, const(
        "logits_segment_shape", [-1, num_anchors, 1], np.int64)], [variable(
            "logits_per_class", np.float32, [segments, num_anchors, 1])])
    return flat


def _per_class_deltas(graph: gs.Graph, deltas: gs.Tensor, batch: int | str,
                      num_classes: int) -> gs.Variable:
    """[B,N,4] -> [B*C,N,4]: an image's box deltas repeated for each of its classes (the
    plugin decodes them against the shared anchors)."""
    num_anchors = deltas.shape[1]
    segments = batch * num_classes if isinstance(batch, int) else f"{batch}_x_classes"
    (once,) = add_node(graph, "Unsqueeze", [deltas, const("deltas_class_axis", [1], np.int64)],
                       [variable("box_deltas_once", np.float32, [batch, 1, num_anchors, 4])])
    (each,) = add_node(graph, "Expand", [once, const(
        "box_deltas_classes", [1, num_classes, 1, 1], np.int64)], [variable(
            "box_deltas_each_class", np.float32, [batch, num_classes, num_anchors, 4])])
    (flat,) = add_node(graph, "Reshape", [each, const(
        "box_deltas_segment_shape", [-1, num_anchors, 4], np.int64)], [variable(
            "box_deltas_per_class", np.float32, [segments, num_anchors, 4])])
    return flat


def _merge_classes(graph: gs.Graph, nms: list[gs.Variable], batch: int | str, num_classes: int,
                   score_threshold: float, max_total: int, clip: ClipWindow,
                   dense: bool) -> list[gs.Variable]:
    """The plugin's per-segment outputs -> the best `max_total` detections of each image
    (`dense`: the plugin took its dense path, which pads with boxes below the threshold)."""
    num, boxes, scores, _ = nms
    segments, per_class = scores.shape
    candidates = num_classes * per_class
    cap = CapGraph(graph, PREFIX)
    valid = cap.node("Less", [cap.const("merge_positions", np.arange(per_class)[None],
                                        np.int32), num], "valid", bool, [segments, per_class])
    if dense:
        above = cap.node("GreaterOrEqual", [scores, cap.const(
            "merge_threshold", score_threshold)], "above", bool, [segments, per_class])
        valid = cap.node("And", [valid, above], "valid_above", bool, [segments, per_class])
    image_shape = cap.const("merge_image_shape", [-1, candidates], np.int64)
    valid = cap.node("Reshape", [valid, image_shape], "image_valid", bool, [batch, candidates])
    image_scores = cap.node("Reshape", [scores, image_shape], "image_scores",
                            shape=[batch, candidates])
    image_boxes = cap.node("Reshape", [boxes, cap.const(
        "merge_box_shape", [-1, candidates, 4], np.int64)], "image_boxes",
        shape=[batch, candidates, 4])
    clipped = clip_to_window(graph, image_boxes, clip.window, f"{PREFIX}clipped_boxes")
    nonempty = nonempty_boxes(graph, clipped, f"{PREFIX}nonempty")
    kept = cap.node("And", [valid, nonempty], "kept", bool, [batch, candidates])
    # the class of each candidate, the same in every image
    image_classes = cap.const("merge_class_ids", np.repeat(np.arange(num_classes), per_class),
                              np.int32)
    best, index, present, new_num = best_kept(cap, kept, image_scores, max_total,
                                              "num_detections")
    boxes_name = "detection_boxes" if clip.inverse is None else "window_detection_boxes"
    outputs = [new_num, *gather_kept(cap, clipped, image_classes, best, index, present,
                                     [boxes_name, "detection_scores", "detection_classes"],
                                     cap.const("merge_axis2", [2], np.int64))]
    if clip.inverse is not None:  # normalised to the window, as change_coordinate_frame
        (outputs[1],) = add_node(graph, "Mul", [outputs[1], clip.inverse], [variable(
            "detection_boxes", np.float32, outputs[1].shape)])
    return outputs
