"""The SSD family (MobileNet, FPNLite, RetinaNet, EfficientDet): network, box decoding and
EfficientNMS_TRT."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from tfod_trt.convert import tf_graph
from tfod_trt.convert.class_nms import ClipWindow, add_per_class_nms
from tfod_trt.convert.config_check import check_against_graph
from tfod_trt.convert.graph_edits import (
    const,
    precise_global_means,
    replace_input_with_normalization,
    save_model,
    slice_last_axis,
)
from tfod_trt.convert.options import (
    ConversionOptions,
    check_head_shapes,
    finish,
    metadata,
    nms_settings,
    ssd_change_coordinate_frame,
    wants_true_image_shape,
)
from tfod_trt.convert.postprocess import (
    NMS_CANDIDATE_POOL,
    NMS_SAFE_SCORE_FLOOR,
    add_efficient_nms,
    anchors_center_size,
    box_deltas,
    clip_boxes,
    clip_to_true_image,
    guard_low_threshold,
    true_image_shape_input,
    true_window,
)


def convert_ssd(config, saved_model: Path, options: ConversionOptions):
    """SSD: network -> normalisation input, score slicing, EfficientNMS_TRT on the anchors;
    with the `true_image_shape` input, TFOD's clip window as onnx_utils.clip_to_true_image."""
    score, iou, top_k = nms_settings(config, options)
    pre = config.preprocessor
    model_name = f"{saved_model} with {config.path}"
    graph_def, outputs = tf_graph.load_frozen_graph(saved_model)
    cut = tf_graph.find_network_cut(graph_def, outputs, model_name)
    check_against_graph(config, saved_model, graph_def, cut.image, cut.class_logits,
                        outputs["raw_detection_boxes"])
    net = tf_graph.convert_network(graph_def, cut, model_name, options.static_batch,
                                   pre.height, pre.width, options.opset)
    if options.tf2onnx_path:
        save_model(net.onnx_model, options.tf2onnx_path)
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(net.onnx_model))
    precise_global_means(graph, options.opset)  # EfficientNet's squeeze-and-excitation
    tensors = graph.tensors()
    logits, encodings = tensors[net.logits_name], tensors[net.boxes_name]
    batch, num_anchors = options.batch_dim, len(net.anchors)
    check_head_shapes(config, net.logits_shape, net.boxes_shape, num_anchors)

    replace_input_with_normalization(
        graph, tensors[net.input_name], batch, pre.height, pre.width, options.input_format,
        *config.normalization,
    )
    scores = logits
    if config.add_background_class:  # drop TFOD's background column
        scores = slice_last_axis(graph, logits, 1, config.num_classes + 1, "class_logits",
                                    [batch, num_anchors, config.num_classes])
    else:  # the name that --validate and --debug know
        scores.name = "class_logits"
    deltas = box_deltas(graph, encodings, [batch, num_anchors, 4], config.box_scales)
    anchors = const("anchors", anchors_center_size(net.anchors))
    true_shape = true_image_shape_input(batch) if wants_true_image_shape(
        config, options) else None
    to_true_image = true_shape is not None and ssd_change_coordinate_frame(config)
    if true_shape is not None:
        graph.inputs.append(true_shape)
    nms = options.nms if min(config.max_detections_per_class, num_anchors) * (
        config.num_classes) >= top_k else "single"  # per class: too few for the total
    if nms == "per_class":
        outputs = _per_class_nms(graph, config, deltas, scores, anchors, true_shape,
                                 to_true_image, (score, iou, top_k))
    else:
        outputs = _single_nms(graph, config, deltas, scores, anchors, true_shape, to_true_image,
                              (score, iou, top_k))
    meta = metadata(config, saved_model, options, score, iou, top_k, true_shape is not None)
    meta["nms"] = nms
    if true_shape is not None:
        meta["box_frame"] = "true_image" if to_true_image else "input"
        meta["max_detections_per_class"] = config.max_detections_per_class
    return finish(graph, outputs, options, meta)


def _per_class_nms(graph: gs.Graph, config, deltas: gs.Tensor, scores: gs.Tensor,
                   anchors: gs.Tensor, true_shape: gs.Tensor | None, to_true_image: bool,
                   settings: tuple[float, float, int]) -> list[gs.Variable]:
    """EfficientNMS_TRT per image and class (the default: convert/class_nms.py), merged with
    TFOD's clip window (the true image, else the whole input) and caps."""
    score, iou, top_k = settings
    clip = None
    if true_shape is not None:
        pre = config.preprocessor
        window, inverse = true_window(graph, true_shape, (pre.height, pre.width))
        clip = ClipWindow(window, inverse if to_true_image else None)
    return add_per_class_nms(
        graph, deltas, scores, anchors, scores.shape[0], score_threshold=score,
        iou_threshold=iou, max_per_class=min(config.max_detections_per_class, scores.shape[1]),
        max_total=top_k, clip=clip)


def _single_nms(graph: gs.Graph, config, deltas: gs.Tensor, scores: gs.Tensor,
                anchors: gs.Tensor, true_shape: gs.Tensor | None, to_true_image: bool,
                settings: tuple[float, float, int]) -> list[gs.Variable]:
    """One EfficientNMS_TRT over all classes of an image (create_onnx.py --nms single: the
    form of NVIDIA's sample), then the guard, the clip window and the caps as TFOD applies
    them."""
    score, iou, top_k = settings
    batch, num_anchors = scores.shape[:2]
    pre = config.preprocessor
    # With a clip window, TFOD caps the total after dropping the boxes the clip emptied: the
    # plugin then keeps every candidate it has (its pre-NMS pool) for the cap after the prune.
    candidates = top_k if true_shape is None else max(
        top_k, min(num_anchors * config.num_classes, NMS_CANDIDATE_POOL))
    outputs = add_efficient_nms(
        graph, deltas, scores, anchors, batch, score_threshold=score, iou_threshold=iou,
        max_detections=candidates, score_activation=True,
    )
    if score < NMS_SAFE_SCORE_FLOOR:
        outputs = guard_low_threshold(graph, outputs, score)
    if true_shape is not None:
        outputs = clip_to_true_image(
            graph, outputs, true_shape, (pre.height, pre.width), config.num_classes,
            min(config.max_detections_per_class, candidates), top_k, to_true_image)
    outputs[1] = clip_boxes(graph, outputs[1])
    return outputs
