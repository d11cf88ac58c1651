"""Mask R-CNN's third stage: TFOD's mask head run on the final detections, as TFOD runs it at
inference (FasterRCNNMetaArch._predict_third_stage).

    detection_boxes -> CropAndResize of the feature map the proposals were cropped from
        -> TFOD's own pooling, box classifier and mask head (converted by tf2onnx)
        -> the mask logits of each detection's class -> sigmoid
        -> detection_masks [B,K,mask_height,mask_width], floats in [0, 1] (TFOD's layout)

TensorFlow side: from the SavedModel's `detection_masks` output up to its Sigmoid, then through
TFOD's gather of each detection's class to the mask head's output [B*K,classes,h,w]; the stage
starts at the MaxPool over the detection crops (the earliest MaxPool above the masks that the
second stage does not use). faster_rcnn.py converts the stage with the rest of the network and
feeds it the crops; this module finds the cut and adds the class gather and the sigmoid.

The crop boxes are the detection boxes as the graph outputs them: normalised to the clip
window. TFOD crops the feature map of the whole (padded) input with those same boxes, so for a
keep_aspect_ratio image smaller than the input its masks come from a region scaled towards the
top left; the graph does the same, to give TFOD's masks.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from tfod_trt.convert.graph_edits import add_node, broadcast_dims, reshape_dims, variable
from tfod_trt.convert.tf_graph import PASS_THROUGH, ConversionError, GraphIndex
from tfod_trt.graph_names import MASKS_OUTPUT

# Between TFOD's mask head output and the Sigmoid of detection_masks: its gather of each
# detection's class (GatherV2 over the masks flattened to [B*K*classes,h,w]).
GATHER_OPS = {"Cast", "Identity", "GatherV2", "Reshape"}


def find_mask_cut(index: GraphIndex, masks: str, box_logits: str,
                  model_name: str) -> tuple[str, str]:
    """(the detection crops [B*K,s,s,C] that start the third stage, the mask head's logits
    [B*K,classes,h,w]) in the frozen graph, found from the `detection_masks` output; the
    second stage's class logits `box_logits` tell its MaxPools apart."""
    sigmoid = index.node(index.walk_up(masks, PASS_THROUGH | {"Reshape"}))
    if sigmoid.op != "Sigmoid":
        raise ConversionError(f"{model_name}: detection_masks come from a '{sigmoid.op}' op, "
                              "not the Sigmoid of TFOD's Mask R-CNN")
    head = index.node(index.walk_up(index.inputs(sigmoid)[0], GATHER_OPS))
    if head.op != "Squeeze":
        raise ConversionError(f"{model_name}: the mask head's output (a Squeeze before the "
                              f"class gather of detection_masks) was not found; found "
                              f"'{head.op}'")
    logits = head.name + ":0"
    second_stage = {node.name for node in index.ancestors(box_logits)}
    pools = {node.name: {above.name for above in index.ancestors(node.name)}
             for node in index.ancestors(logits)
             if node.op == "MaxPool" and node.name not in second_stage}
    first = [name for name, above in pools.items()
             if not any(other != name and other in above for other in pools)]
    if len(first) != 1:
        raise ConversionError(
            f"{model_name}: the mask stage's input (TFOD's MaxPool over the cropped detections) "
            f"was not found; candidates: {sorted(pools)}")
    return index.inputs(index.nodes[first[0]])[0], logits


def add_detection_masks(graph: gs.Graph, logits: gs.Tensor, classes: gs.Tensor,
                        batch: int | str) -> gs.Variable:
    """The mask head's logits [B*K,M,h,w] (M: one mask per class, or 1 class-agnostic) -> the
    mask of each detection's class (0-based `classes` [B,K] int32) through a sigmoid ->
    detection_masks [B,K,h,w]."""
    columns, height, width = logits.shape[1:]
    detections = classes.shape[1]
    shape = [batch, detections, columns, height, width]
    (per_detection,) = add_node(graph, "Reshape", [logits, reshape_dims("mask_logits_shape",
                                                                        shape)],
                                [variable("mask_logits_per_detection", np.float32, shape)])
    chosen = per_detection
    if columns > 1:
        (index,) = add_node(graph, "Reshape", [classes, reshape_dims(
            "mask_class_shape", [batch, detections, 1, 1, 1])], [variable(
                "mask_class", np.int32, [batch, detections, 1, 1, 1])])
        one = [batch, detections, 1, height, width]
        (index,) = add_node(graph, "Expand", [index, broadcast_dims("mask_class_grid", one)],
                            [variable("mask_class_index", np.int32, one)])
        (chosen,) = add_node(graph, "GatherElements", [per_detection, index], [variable(
            "mask_logits_of_class", np.float32, one)], axis=2)
    flat = [batch, detections, height, width]
    (chosen,) = add_node(graph, "Reshape", [chosen, reshape_dims("mask_shape", flat)],
                         [variable("detection_mask_logits", np.float32, flat)])
    (masks,) = add_node(graph, "Sigmoid", [chosen], [variable(MASKS_OUTPUT, np.float32, flat)])
    return masks
