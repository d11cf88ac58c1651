"""Faster R-CNN (TFOD, two stages) as one ONNX graph that TensorRT builds.

    image -> normalisation -> backbone -> RPN heads
          -> EfficientNMS_TRT #1 (softmax objectness, deltas decoded on TF's anchors, in pixels)
          -> proposals clipped to the clip window, emptied ones dropped, normalised
          -> CropAndResize (the cropped feature map, NCHW; FPN: every level, then each
             proposal's level as TFOD assigns it) -> TFOD's own pooling and second stage
          -> softmax, padded proposals masked, deltas divided by the box coder scales
          -> EfficientNMS_TRT #2 (decoded on the proposals as per-image anchors, in pixels)
          -> TFOD's max_detections_per_class, clipped to the clip window (emptied ones
             dropped) -> boxes normalised to the clip window
          -> Mask R-CNN: CropAndResize at the detection boxes -> TFOD's mask stage
             (mask_head.py) -> detection_masks

TensorFlow side: the SavedModel's frozen graph is searched by structure (as tf_graph.py does for
SSD): the second stage from the documented outputs `raw_detection_scores/boxes` back to the crop
that feeds it (the MaxPool after the first stage's box decoder), the first stage from that crop
(the nearest Softmax and box decoder; the feature maps reached along data, not through a loop).
The first-stage NMS, proposal normalisation and TFOD's crop (While loops, matmuls) are replaced
by the plugins; both network parts are converted in one tf2onnx call with two inputs (the
preprocessed image and the crops), which the graph surgery joins. A Mask R-CNN's mask stage is
a third part with its own input (the detection crops), converted in the same call.

The clip window. TFOD clips proposals and detections (after each NMS; boxes the clip empties
are dropped) to the true, unpadded image, and normalises the detections to it. A static engine
does not know where a keep_aspect_ratio image ends, so those graphs (by default) take a second
input `true_image_shape` [B,2] float32, each image's height and width in pixels inside the
input, and do exactly that; their detection boxes are normalised to the true image (metadata
`box_frame: true_image`). Without it (fixed_shape_resizer, or --no_true_image_shape) the whole
input is the clip window and boxes are normalised to the input.

A dynamic batch (create_onnx.py --batch_size -1) leaves both network parts' batch free (the crops
are [B*R,s,s,C] for any B) and crops with CropAndResizeDynamic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tfod_trt import optional
from tfod_trt.convert import tf_graph
from tfod_trt.convert.config_check import check_against_graph, check_masks
from tfod_trt.convert.graph_edits import (
    add_node,
    const,
    fold_inverse_transposes,
    replace_input_with_normalization,
    reshape_dims,
    rewire,
    save_model,
    slice_last_axis,
    variable,
)
from tfod_trt.convert.mask_head import add_detection_masks, find_mask_cut
from tfod_trt.convert.options import (
    check_head_shapes,
    finish,
    metadata,
    nms_settings,
    wants_true_image_shape,
)
from tfod_trt.convert.postprocess import (
    NMS_CANDIDATE_POOL,
    NMS_SAFE_SCORE_FLOOR,
    add_crop_and_resize,
    add_efficient_nms,
    anchors_center_size,
    box_deltas,
    cap_per_class,
    clip_boxes,
    clip_to_window,
    corners_to_center_size,
    guard_low_threshold,
    nonempty_boxes,
    per_image_window,
    true_image_shape_input,
)
from tfod_trt.convert.tf_graph import ConversionError, GraphIndex
from tfod_trt.graph_names import MASKS_OUTPUT

LOOPS = frozenset({"While", "StatelessWhile"})
OBJECTNESS = 1  # the RPN's softmax column of "object" (0 is background)
# tf.image.crop_and_resize and the CropAndResize plugin sample a row at y1*(H-1) + i*step; for a
# proposal ending at the image edge, rounding can put the last row an ulp past H-1, which then
# reads 0. TFOD's matmul crop has no such cliff; keeping the crop boxes this far inside matches it
# (a sample weight of ~1e-6 moves to the neighbouring row).
MATMUL_CROP_EDGE = 1.0 - 2e-6


@dataclass
class TwoStageCut:
    """Tensor names in the frozen SavedModel graph where the two network parts start and end."""

    image: str  # preprocessed image [B,H,W,3]
    rpn_logits: str  # [B,N,2] objectness logits, background first
    rpn_encodings: str  # [B,N,1,4] box encodings before the box coder's scaling
    rpn_anchors: str  # [B,N,1,4] anchors in pixels (clipped to the image), as tiled for decoding
    features: list[str]  # [B,h,w,C] the feature map(s) cropped (FPN: one per level)
    crops: str  # [B*R,s,s,C] the crops as the second stage consumes them
    box_logits: str  # [B,R,C+1] second-stage logits (after TFOD's logit scale)
    box_encodings: str  # [B,R,1,4] (shared) or [B,R,C,4] box encodings
    proposals: str  # [B,R,C',4] TF's proposals in pixels as the second decoder tiles them
    mask_crops: str | None = None  # Mask R-CNN: [B*K,s,s,C] the detection crops ...
    mask_logits: str | None = None  # ... and the mask head's output [B*K,classes,h,w]


@dataclass
class TwoStageNetwork:
    """tf2onnx's conversion of both parts (before our surgery), with the RPN anchors."""

    onnx_model: object  # onnx.ModelProto
    image: str  # ONNX input names
    crops: str
    rpn_logits: str  # ONNX output names
    rpn_encodings: str
    box_logits: str
    box_encodings: str
    features: list[str]  # finest (FPN's lowest level) first
    anchors: np.ndarray  # [N,4] float32 corners (ymin, xmin, ymax, xmax) in pixels
    mask_crops: str | None = None  # Mask R-CNN: the mask stage's ONNX input ...
    mask_logits: str | None = None  # ... and output


def find_two_stage_cut(graph_def, outputs: dict[str, str], model_name: str) -> TwoStageCut:
    """Locates both network parts by structure (see module docstring); names what is missing."""
    tf_graph.check_outputs(outputs, model_name)
    index = GraphIndex(graph_def)
    box_logits = tf_graph.find_logits(
        index, outputs["raw_detection_scores"], model_name, "Softmax", "Faster R-CNN")
    box_encodings, proposals = tf_graph.find_box_decoder_inputs(
        index, outputs["raw_detection_boxes"], model_name)
    crops = _find_crops(index, box_logits, model_name)
    softmax = next((n for n in index.ancestors(crops) if n.op == "Softmax"), None)
    if softmax is None:
        raise ConversionError(f"{model_name}: the first stage's objectness Softmax was not found")
    rpn_logits = index.inputs(softmax)[0]
    rpn_encodings, rpn_anchors = tf_graph.find_box_decoder_inputs(index, crops, model_name)
    masks = (find_mask_cut(index, outputs[MASKS_OUTPUT], box_logits, model_name)
             if MASKS_OUTPUT in outputs else (None, None))
    return TwoStageCut(
        image=tf_graph.find_preprocessed_image(index, rpn_logits, model_name),
        rpn_logits=rpn_logits, rpn_encodings=rpn_encodings, rpn_anchors=rpn_anchors,
        features=_find_cropped_features(index, crops, rpn_logits, model_name),
        crops=crops, box_logits=box_logits, box_encodings=box_encodings, proposals=proposals,
        mask_crops=masks[0], mask_logits=masks[1],
    )


def _find_crops(index: GraphIndex, box_logits: str, model_name: str) -> str:
    """The second stage starts with TFOD's MaxPool over the crops: of the MaxPools above the
    second-stage logits that come after decoded proposals (an Exp), the earliest one."""
    pools = {}
    for node in index.ancestors(box_logits):
        if node.op == "MaxPool":
            above = {a.name for a in index.ancestors(node.name)}
            if any(index.nodes[name].op == "Exp" for name in above):
                pools[node.name] = above
    first = [name for name, above in pools.items()
             if not any(other != name and other in above for other in pools)]
    if len(first) != 1:
        raise ConversionError(
            f"{model_name}: the second stage's input (TFOD's MaxPool over the cropped "
            f"proposals) was not found; candidates: {sorted(pools)}"
        )
    return index.inputs(index.nodes[first[0]])[0]


def _find_cropped_features(index: GraphIndex, crops: str, rpn_logits: str,
                           model_name: str) -> list[str]:
    """The feature maps are the nearest tensors above the crops that the RPN heads also read,
    reached along data (not shapes) and not through the NMS and normalisation loops (the
    proposals' path). FPN models crop one of several levels per proposal."""
    rpn_side = {node.name for node in index.ancestors(rpn_logits)}

    def stop(node) -> bool:
        return node.op in LOOPS or node.op == "Shape" or node.name in rpn_side

    found = [node.name + ":0" for node in index.ancestors(crops, stop)
             if node.name in rpn_side and node.op != "Const"]
    if not found:
        raise ConversionError(
            f"{model_name}: the feature map cropped by the proposals was not found")
    return found


def convert_network(saved_model: Path, config, batch_size: int | None, opset: int,
                    detections: int) -> TwoStageNetwork:
    """SavedModel -> ONNX of both network parts (batch_size None: the batch left free), plus
    the RPN anchors (see module docstring); a Mask R-CNN's mask stage takes the crops of
    `detections` boxes per image."""
    tf = optional.tensorflow()

    model_name = config.path.name
    height, width = config.preprocessor.height, config.preprocessor.width
    graph_def, outputs = tf_graph.load_frozen_graph(saved_model)
    cut = find_two_stage_cut(graph_def, outputs, model_name)
    check_against_graph(config, saved_model, graph_def, cut.image, cut.box_logits,
                        outputs["raw_detection_boxes"])
    image = {"image": (cut.image, [batch_size, height, width, 3])}
    probe = batch_size or 1  # the anchors are the same for every image
    first = tf_graph.prune_graph(graph_def, image, [cut.rpn_anchors, *cut.features])
    anchors, *features = first(tf.zeros([probe, height, width, 3], tf.float32))
    anchors = anchors.numpy().reshape(probe, -1, 4)[0]
    levels = sorted(zip(cut.features, features, strict=True), key=lambda lv: -lv[1].shape[1])

    proposals = config.two_stage.max_proposals
    crop = config.two_stage.initial_crop_size
    feeds = {**image, "crops": (cut.crops, [batch_size and batch_size * proposals, crop, crop,
                                            features[0].shape[-1]])}
    fetches = [cut.rpn_logits, cut.rpn_encodings, cut.box_logits, cut.box_encodings,
               *(name for name, _ in levels)]
    if cut.mask_logits:
        feeds["mask_crops"] = (cut.mask_crops, [batch_size and batch_size * detections, crop,
                                                crop, features[0].shape[-1]])
        fetches.append(cut.mask_logits)
    both = tf_graph.prune_graph(graph_def, feeds, fetches)
    del graph_def, first, features, levels  # tf2onnx's peak memory comes next
    _check_network(config, saved_model, both, bool(cut.mask_logits))
    names = [t.name for t in both.outputs]
    model = tf_graph.to_onnx(both, names, opset, f"{model_name} network")
    masks = (both.inputs[2].name, names.pop()) if cut.mask_logits else (None, None)
    return TwoStageNetwork(model, both.inputs[0].name, both.inputs[1].name, *names[:4],
                           features=names[4:], anchors=anchors, mask_crops=masks[0],
                           mask_logits=masks[1])


def _check_network(config, saved_model: Path, network, masks: bool) -> None:
    """The pruned network (outputs: RPN, second stage, ..., a Mask R-CNN's mask logits last)
    against the config: the proposals per image, and the masks."""
    proposals = config.two_stage.max_proposals
    taken = network.outputs[2].shape.as_list()[1]
    if taken != proposals:
        raise ConversionError(
            f"{config.path}: first_stage_max_proposals is {proposals}, but the SavedModel's "
            f"second stage takes {taken} proposals per image; use the pipeline.config "
            "exported with this SavedModel"
        )
    check_masks(config, saved_model, network.outputs[-1].shape[2:] if masks else None)


def convert(config, saved_model: Path, options):
    """SavedModel + ModelConfig -> onnx.ModelProto: both stages, two EfficientNMS_TRT and one
    CropAndResize (Mask R-CNN: a second CropAndResize and the mask stage; see module
    docstring). `options` are create_onnx.ConversionOptions."""
    score, iou, top_k = nms_settings(config, options)
    pre, batch = config.preprocessor, options.batch_dim
    proposals = config.two_stage.max_proposals
    net = convert_network(saved_model, config, options.static_batch, options.opset, top_k)
    if options.tf2onnx_path:
        save_model(net.onnx_model, options.tf2onnx_path)
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(net.onnx_model))
    tensors = graph.tensors()
    box_logits, box_encodings = tensors[net.box_logits], tensors[net.box_encodings]
    check_head_shapes(config, box_logits.shape, box_encodings.shape, proposals)

    padded = np.array([pre.height, pre.width] * 2, np.float32)  # the network input, pixels
    true_shape = true_image_shape_input(batch) if wants_true_image_shape(
        config, options) else None
    if true_shape is None:  # the whole input is the image
        clip = const("clip_window", padded), const("clip_window_inverse", 1 / padded)
    else:  # TFOD's clip window from true_image_shapes, per image
        clip = per_image_window(graph, true_shape, "clip_window")
    rois, num_rois = _first_stage(graph, tensors[net.rpn_logits], tensors[net.rpn_encodings],
                                  net.anchors, padded, clip[0], config, batch)
    features = _nchw_features(graph, [tensors[name] for name in net.features])
    rewire(graph, tensors[net.crops], _crop(graph, features, rois, config.two_stage, padded))
    replace_input_with_normalization(
        graph, tensors[net.image], batch, pre.height, pre.width, options.input_format,
        *config.normalization,
    )
    if true_shape is not None:
        graph.inputs.append(true_shape)
    outputs = _second_stage(graph, box_logits, box_encodings, rois, num_rois, padded, clip,
                            config, batch, score=score, iou=iou, top_k=top_k)
    if net.mask_logits:  # TFOD crops at the detection boxes as they are output
        detection_crops = _crop(graph, features, outputs[1], config.two_stage, padded, "mask_")
        rewire(graph, tensors[net.mask_crops], detection_crops)
        outputs.append(add_detection_masks(graph, tensors[net.mask_logits], outputs[3], batch))
    fold_inverse_transposes(graph)
    meta = metadata(config, saved_model, options, score, iou, top_k,
                                true_shape is not None)
    meta.update(_two_stage_metadata(config, outputs[4] if net.mask_logits else None))
    return finish(graph, outputs, options, meta)


def _two_stage_metadata(config, masks) -> dict:
    """The metadata Faster R-CNN adds: its per-class cap and first stage, and a Mask R-CNN's
    masks output (`masks`, [B,K,h,w]; None without)."""
    first = config.two_stage
    meta = {
        "max_detections_per_class": config.max_detections_per_class,
        "first_stage": {"score_threshold": first.score_threshold,
                        "iou_threshold": first.iou_threshold,
                        "max_proposals": first.max_proposals,
                        "initial_crop_size": first.initial_crop_size},
    }
    if masks is not None:
        height, width = masks.shape[2:]
        meta["masks"] = {"output": MASKS_OUTPUT, "height": height, "width": width}
    return meta


def _first_stage(graph, logits, encodings, anchors: np.ndarray, padded: np.ndarray, window,
                 config, batch: int):
    """RPN -> proposals: EfficientNMS_TRT over the objectness in pixels (as TFOD's first-stage
    NMS), then, as TFOD after its NMS, clipped to the clip window (the true image), emptied
    boxes dropped, and normalised to the network input -> (rois [B,R,4], rpn_num_detections)."""
    first, count = config.two_stage, len(anchors)
    (probs,) = add_node(graph, "Softmax", [logits], [variable(
        "rpn_objectness", np.float32, [batch, count, 2])], axis=-1)
    scores = slice_last_axis(graph, probs, OBJECTNESS, OBJECTNESS + 1, "rpn_scores",
                                [batch, count, 1])
    deltas = box_deltas(graph, encodings, [batch, count, 4], config.box_scales, "rpn_")
    nms = add_efficient_nms(
        graph, deltas, scores, const("rpn_anchors", anchors_center_size(anchors)), batch,
        score_threshold=first.score_threshold, iou_threshold=first.iou_threshold,
        max_detections=first.max_proposals, score_activation=False, prefix="rpn_",
    )
    if first.score_threshold < NMS_SAFE_SCORE_FLOOR:
        nms = guard_low_threshold(graph, nms, first.score_threshold, "rpn_")
    shape = [batch, first.max_proposals, 4]
    nms = _clip_and_prune(graph, nms, window, 1, first.max_proposals, first.max_proposals,
                          "rpn_")
    # TFOD: to_normalized_coordinates of the padded image shape (times 1 / size)
    (rois,) = add_node(graph, "Mul", [nms[1], const("rpn_normalize", 1 / padded)],
                          [variable("proposals", np.float32, shape)])
    return rois, nms[0]


def _clip_and_prune(graph, nms: list, window, classes: int, max_per_class: int, keep: int,
                    prefix: str) -> list:
    """TFOD's multiclass NMS after its per-class selection: boxes clipped to the window, boxes
    that the clip emptied dropped, at most `max_per_class` per class and `keep` in all remain
    (in score order, zero-filled and recounted like the plugin's outputs)."""
    name = nms[1].name
    nms[1].name = "unwindowed_" + name
    clipped = clip_to_window(graph, nms[1], window, name)
    nonempty = nonempty_boxes(graph, clipped, f"{prefix}boxes_nonempty")
    return cap_per_class(graph, [nms[0], clipped, nms[2], nms[3]], classes, max_per_class,
                            keep, keep_mask=nonempty, prefix=prefix)


def _nchw_features(graph, features: list) -> list:
    """The feature map(s) to crop (NHWC, FPN: one per level), transposed to NCHW for
    CropAndResize."""
    nchw = []
    for level, feature in enumerate(features):
        batch, height, width, channels = feature.shape
        nchw += add_node(graph, "Transpose", [feature], [variable(
            f"crop_features_{level}", np.float32, [batch, channels, height, width])],
            perm=[0, 3, 1, 2])
    return nchw


def _crop(graph, features: list, rois, two_stage, window: np.ndarray, prefix: str = ""):
    """CropAndResize on the NCHW feature map -> [B*R,s,s,C], where TFOD's crops were. With
    several (FPN) feature maps, every level is cropped and each box takes its own level."""
    crop, channels = two_stage.initial_crop_size, features[0].shape[1]
    crop_rois = rois
    if two_stage.matmul_crop:
        (crop_rois,) = add_node(graph, "Min", [rois, const(f"{prefix}crop_edge",
                                                           MATMUL_CROP_EDGE)],
                                [variable(f"{prefix}crop_boxes", np.float32, list(rois.shape))])
    levels = [add_crop_and_resize(graph, feature, crop_rois, crop, crop,
                                  f"{prefix}crops_level_{level}")
              for level, feature in enumerate(features)]
    crops = levels[0] if len(levels) == 1 else _select_levels(graph, levels, rois, window,
                                                              prefix)
    batch, proposals = rois.shape[:2]
    count = batch * proposals if isinstance(batch, int) else f"{batch}*{proposals}"
    (flat,) = add_node(graph, "Reshape", [crops, reshape_dims(
        f"{prefix}crops_shape", [count, channels, crop, crop])], [variable(
            f"{prefix}crops_flat", np.float32, [count, channels, crop, crop])])
    (nhwc,) = add_node(graph, "Transpose", [flat], [variable(
        f"{prefix}crops", np.float32, [count, crop, crop, channels])], perm=[0, 2, 3, 1])
    return nhwc


def _select_levels(graph, levels: list, rois, window: np.ndarray, prefix: str = ""):
    """Each box's crop from its FPN level, as TFOD's ops.fpn_feature_levels assigns it:
    floor(log2(sqrt(area) * sqrt(H*W) / 224)) + (levels - 2), clipped to the levels."""
    batch, proposals = rois.shape[:2]
    shape = [batch, proposals, 1]
    prefix += "fpn_"

    def node(op: str, inputs: list, name: str, **attrs):
        return add_node(graph, op, inputs, [variable(f"{prefix}{name}", np.float32, shape)],
                           **attrs)[0]

    low = slice_last_axis(graph, rois, 0, 2, f"{prefix}box_min", [batch, proposals, 2])
    high = slice_last_axis(graph, rois, 2, 4, f"{prefix}box_max", [batch, proposals, 2])
    (size,) = add_node(graph, "Sub", [high, low], [variable(
        f"{prefix}box_size", np.float32, [batch, proposals, 2])])
    height = slice_last_axis(graph, size, 0, 1, f"{prefix}box_height", shape)
    width = slice_last_axis(graph, size, 1, 2, f"{prefix}box_width", shape)
    image_ratio = np.sqrt(np.float32(window[0] * window[1])) / np.float32(224)
    scale = node("Sqrt", [node("Mul", [height, width], "area")], "scale")
    scale = node("Log", [node("Mul", [scale, const(f"{prefix}image_ratio", image_ratio)],
                              "relative_scale")], "log_scale")
    octave = node("Floor", [node("Div", [scale, const(f"{prefix}log2", np.log(np.float32(2)))],
                                 "log2_scale")], "octave")
    level = node("Clip", [node("Add", [octave, const(f"{prefix}unit_level", len(levels) - 2.0)],
                               "level_unclipped"),
                          const(f"{prefix}min_level", 0.0), const(f"{prefix}max_level",
                                                                   len(levels) - 1.0)], "level")
    (level,) = add_node(graph, "Unsqueeze", [level, const(f"{prefix}axes", [3, 4], np.int64)],
                           [variable(f"{prefix}level_5d", np.float32, shape + [1, 1])])
    crops = levels[0]
    for index, candidate in enumerate(levels[1:], start=1):
        (chosen,) = add_node(graph, "Equal", [level, const(f"{prefix}level_{index}",
                                                                 float(index))],
                                [variable(f"{prefix}is_level_{index}", bool, shape + [1, 1])])
        (crops,) = add_node(graph, "Where", [chosen, candidate, crops], [variable(
            f"{prefix}crops_{index}", np.float32, list(candidate.shape))])
    return crops


def _second_stage(graph, logits, encodings, rois, num_rois, padded: np.ndarray, clip: tuple,
                  config, batch: int, *, score: float, iou: float, top_k: int) -> list:
    """Box classifier -> detections: softmax scores of the real proposals, deltas decoded on
    the proposals (pixels of the network input, as TFOD), per-class NMS and cap, clipped to the
    clip window (emptied boxes dropped), normalised to the clip window (TFOD's
    change_coordinate_frame) and clipped to [0, 1]."""
    proposals, classes = rois.shape[1], config.num_classes
    (probs,) = add_node(graph, "Softmax", [logits], [variable(
        "class_probabilities", np.float32, [batch, proposals, classes + 1])], axis=-1)
    scores = slice_last_axis(graph, probs, 1, classes + 1, "class_scores_all",
                                [batch, proposals, classes])
    scores = _drop_padded_proposals(graph, scores, num_rois)
    box_columns = encodings.shape[2]  # 1: one box for all classes, else one per class
    delta_shape = [batch, proposals, 4] if box_columns == 1 else [batch, proposals, classes, 4]
    deltas = box_deltas(graph, encodings, delta_shape, config.box_scales)
    (pixels,) = add_node(graph, "Mul", [rois, const("proposal_window", padded)],
                            [variable("proposal_boxes", np.float32, list(rois.shape))])
    anchors = corners_to_center_size(graph, pixels, "proposal_anchors")
    # TFOD caps the total after dropping emptied boxes: the plugin keeps every candidate
    candidates = max(top_k, min(proposals * classes, NMS_CANDIDATE_POOL))
    outputs = add_efficient_nms(
        graph, deltas, scores, anchors, batch, score_threshold=score, iou_threshold=iou,
        max_detections=candidates, score_activation=False,
    )
    if score < NMS_SAFE_SCORE_FLOOR:
        outputs = guard_low_threshold(graph, outputs, score)
    outputs = _clip_and_prune(graph, outputs, clip[0], classes,
                              min(config.max_detections_per_class, candidates), top_k, "")
    boxes = outputs[1]
    boxes.name = "pixel_" + boxes.name
    (outputs[1],) = add_node(graph, "Mul", [boxes, clip[1]],
                                [variable("detection_boxes", np.float32, boxes.shape)])
    outputs[1] = clip_boxes(graph, outputs[1])
    return outputs


def _drop_padded_proposals(graph, scores, num_rois):
    """TFOD's second stage ignores proposals past the first stage's count: score them -1,
    below any threshold."""
    batch, proposals, _ = scores.shape
    (valid,) = add_node(graph, "Less", [const(
        "proposal_positions", np.arange(proposals)[None], np.int32), num_rois],
        [variable("proposal_valid", bool, [batch, proposals])])
    (valid,) = add_node(graph, "Unsqueeze", [valid, const("proposal_axis", [2], np.int64)],
                           [variable("proposal_valid3", bool, [batch, proposals, 1])])
    (masked,) = add_node(graph, "Where", [valid, scores, const("proposal_dropped", -1.0)],
                            [variable("class_scores", np.float32, list(scores.shape))])
    return masked


def tf_reference(saved_model: Path, height: int, width: int):
    """TensorFlow's computation on preprocessed images, for parity checks: the SavedModel's
    frozen serving graph with the exporter's resize loop bypassed; its true image shapes are
    fed too (by default the whole network input counts as the image).

    Returns run(images, true_shapes=None): normalised images [B,H,W,3] (TFOD's preprocessed
    batch) and [B,2] heights and widths -> dict of the SavedModel's outputs plus 'proposals'
    [B,R,4] (pixels), 'rpn_logits', 'rpn_encodings'."""
    graph_def, outputs = tf_graph.load_frozen_graph(saved_model)
    cut = find_two_stage_cut(graph_def, outputs, saved_model.name)
    fetches = {**outputs, "proposals": cut.proposals, "rpn_logits": cut.rpn_logits,
               "rpn_encodings": cut.rpn_encodings}
    run_graph = tf_graph.bypassed_resize(graph_def, cut.image, fetches, height, width)

    def run(images: np.ndarray, true_shapes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        result = run_graph(images, true_shapes)
        result["proposals"] = result["proposals"][:, :, 0]  # TF tiles them over box columns
        return result

    return run
